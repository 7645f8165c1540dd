import { describe, expect, test } from "bun:test";
import { resolve } from "node:path";
import { ConfigError, loadConfig } from "../../api/config.ts";

describe("loadConfig", () => {
  test("embedded defaults need no environment", () => {
    const config = loadConfig({});
    expect(config.port).toBe(4000);
    expect(config.host).toBe("127.0.0.1");
    expect(config.database.url).toBe(`file:${resolve(".data/opencode-cloud.db")}`);
    expect(config.env).toBe("development");
    expect(config.sandbox).toMatchObject({
      provider: "local",
      workspaces: "auto",
      requireIsolation: false,
      allowLocalRepos: true,
    });
    expect(config.sandbox.dir).toBe(resolve(".data/sandbox"));
  });

  test("production forbids cloning host paths unless told otherwise", () => {
    const prod = loadConfig({
      NODE_ENV: "production",
      JWT_SECRET: "s".repeat(40),
      SANDBOX_MAX_MEMORY_BYTES: "2gb",
    });
    expect(prod.sandbox.allowLocalRepos).toBe(false);
    expect(prod.sandbox.maxMemoryBytes).toBe(2 * 1024 ** 3);
  });

  const bad: [Record<string, string>, string][] = [
    [{ PORT: "eighty" }, "PORT"],
    [{ PORT: "70000" }, "PORT"],
    [{ DATABASE_URL: "postgres://x" }, "DATABASE_URL"],
    [{ JWT_SECRET: "short" }, "JWT_SECRET"],
    [{ NODE_ENV: "production" }, "JWT_SECRET"],
    [{ MAX_BODY_BYTES: "lots" }, "MAX_BODY_BYTES"],
    [{ LOG_LEVEL: "loud" }, "LOG_LEVEL"],
    [{ PUBLIC_URL: "not a url" }, "PUBLIC_URL"],
    [{ JWT_PRIVATE_KEY: "abc" }, "JWT_PRIVATE_KEY"],
    [{ SANDBOX_WORKSPACES: "zfs" }, "SANDBOX_WORKSPACES"],
    [{ SANDBOX_REQUIRE_ISOLATION: "maybe" }, "SANDBOX_REQUIRE_ISOLATION"],
    [{ SANDBOX_MAX_MEMORY_BYTES: "lots" }, "SANDBOX_MAX_MEMORY_BYTES"],
    [{ SANDBOX_TIMEOUT_MS: "5" }, "SANDBOX_TIMEOUT_MS"],
    [{ SECRETS_KEY: "short" }, "SECRETS_KEY"],
    [{ AGENT_MODEL_BASE_URL: "not a url" }, "AGENT_MODEL_BASE_URL"],
    [{ SANDBOX_PROVIDER: "contree" }, "SANDBOX_PROVIDER"],
    [{ SANDBOX_PROVIDER: "firecracker" }, "SANDBOX_PROVIDER"],
    [{ CONTREE_API_KEY: "k", CONTREE_URL: "contree.dev" }, "CONTREE_URL"],
    [{ MODEL_GATEWAY_URL: "gateway" }, "MODEL_GATEWAY_URL"],
  ];
  for (const [env, variable] of bad) {
    test(`${JSON.stringify(env)} names ${variable}`, () => {
      try {
        loadConfig(env);
        throw new Error("expected a ConfigError");
      } catch (error) {
        expect(error).toBeInstanceOf(ConfigError);
        expect((error as ConfigError).variable).toBe(variable);
        expect((error as Error).message).toStartWith(`${variable}: `);
      }
    });
  }

  test("ConTree is offered with a key; a docker-style base tag is importable from Docker Hub", () => {
    expect(loadConfig({}).sandbox.contree).toBeNull();
    const config = loadConfig({ CONTREE_API_KEY: "k", CONTREE_PROJECT: "p", SANDBOX_PROVIDER: "contree" });
    expect(config.sandbox.provider).toBe("contree");
    expect(config.sandbox.contree).toEqual({
      url: "https://api.tokenfactory.nebius.com/sandboxes",
      token: "k",
      project: "p",
      image: "tag:ubuntu:latest",
      imageSource: "docker://docker.io/library/ubuntu:latest",
      network: true,
      streamIdleMs: 30_000,
    });
    const custom = loadConfig({
      CONTREE_TOKEN: "k",
      CONTREE_IMAGE: "tag:acme/builder:2",
      CONTREE_URL: "http://x/",
    });
    expect(custom.sandbox.contree).toMatchObject({
      url: "http://x",
      project: null,
      imageSource: "docker://docker.io/acme/builder:2",
    });
    const uuid = loadConfig({ CONTREE_TOKEN: "k", CONTREE_IMAGE: "0b6e3c2a-3f7e-4c8e-9d55-1a2b3c4d5e6f" });
    expect(uuid.sandbox.contree?.imageSource).toBeNull();
  });

  test("a Turso URL with a token and sizes with units are accepted", () => {
    const config = loadConfig({
      DATABASE_URL: "libsql://db-org.turso.io",
      DATABASE_AUTH_TOKEN: "t",
      MAX_BODY_BYTES: "2mb",
      NODE_ENV: "production",
      JWT_SECRET: "s".repeat(40),
    });
    expect(config.database).toEqual({ url: "libsql://db-org.turso.io", authToken: "t" });
    expect(config.limits.maxBodyBytes).toBe(2 * 1024 * 1024);
  });
});

test("the real entry point stops with one clear line naming a bad variable", () => {
  const run = Bun.spawnSync([process.execPath, "api/main.ts"], {
    cwd: resolve(import.meta.dir, "../.."),
    env: { ...process.env, PORT: "eighty" },
    stdout: "pipe",
    stderr: "pipe",
  });
  const stderr = run.stderr.toString();
  expect(run.exitCode).toBe(78);
  expect(stderr.trim().split("\n")).toEqual([
    'opencode.cloud: invalid configuration: PORT: expected a whole number, got "eighty"',
  ]);
});
