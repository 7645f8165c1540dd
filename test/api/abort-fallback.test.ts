// An abort survives a failed call between instances: two real server processes on one libSQL file
// and one real redis-server, where the owner's INSTANCE_URL points nowhere (as in a network split:
// it is alive in the shared store, but no instance can reach it). abortRun sent to the other instance
// cannot be forwarded; the request it recorded on the run is noticed by the owner, which aborts the
// run as a local abortRun does.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type ServerProcess, startServerProcess } from "../../scripts/lib/server-process.ts";
import { postGraphql } from "../utils/graphql-http.ts";
import { sharedEnv, useSharedBackends } from "../utils/shared-state.ts";

const shared = useSharedBackends();
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function ok(server: { url: string }, query: string, variables = {}, token?: string) {
  const reply = await postGraphql(server.url, query, variables, token);
  if (reply.errors) throw new Error(`${query.slice(0, 60)}: ${JSON.stringify(reply.errors)}`);
  return reply.data;
}

const signUp = async (server: { url: string }) =>
  (
    await ok(server, `mutation($e: String!) { register(email: $e, password: "password123") { token } }`, {
      e: `abort-${crypto.randomUUID().slice(0, 8)}@example.com`,
    })
  ).register.token as string;

describe.skipIf(shared.skip)("abortRun when the run's instance cannot be reached", () => {
  const dir = mkdtempSync(join(tmpdir(), "occ-abort-fallback-"));
  const servers: ServerProcess[] = [];
  let owner: ServerProcess;
  let other: ServerProcess;

  beforeAll(async () => {
    const env = {
      NODE_ENV: "test",
      DATABASE_URL: `file:${join(dir, "shared.db")}`,
      SANDBOX_STORE_DIR: join(dir, "store"),
      JWT_SECRET: `abort-fallback-${crypto.randomUUID()}`,
      REDIS_KEY_PREFIX: `abort-${crypto.randomUUID().slice(0, 8)}:`,
      ...sharedEnv("redis", shared.redis),
    };
    // Port 1 on the loopback: nothing listens there, so every call to the owner is refused.
    owner = await startServerProcess({ ...env, INSTANCE_URL: "http://127.0.0.1:1" });
    servers.push(owner);
    other = await startServerProcess(env);
    servers.push(other);
  }, 60_000);

  afterAll(async () => {
    for (const server of servers) await server.stop().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  });

  test("the abort is recorded and the owner ends the run ABORTED, as a local abort does; typed errors as before", async () => {
    const token = await signUp(owner);
    const branch = (
      await ok(
        owner,
        `mutation { createSession(input: { title: "split" }) { mainBranch { id } } }`,
        {},
        token,
      )
    ).createSession.mainBranch.id as string;
    const run = (
      await ok(
        owner,
        `mutation($b: ID!) { exec(branchId: $b, command: "echo started; sleep 30") { id } }`,
        { b: branch },
        token,
      )
    ).exec as { id: string };
    const runOn = async (server: { url: string }) =>
      (
        await ok(
          server,
          `query($r: ID!) { run(id: $r) { status killedBy output snapshot { id } } }`,
          { r: run.id },
          token,
        )
      ).run as { status: string; killedBy: string | null; output: string; snapshot: { id: string } | null };
    for (let i = 0; (await runOn(other)).status !== "RUNNING"; i++) {
      if (i > 300) throw new Error("the run did not start");
      await sleep(100);
    }

    // Someone outside the session: refused as before, and nothing is recorded.
    const stranger = await signUp(other);
    const refused = await postGraphql(
      other.url,
      `mutation($r: ID!) { abortRun(id: $r) { id } }`,
      { r: run.id },
      stranger,
    );
    expect(refused.errors?.[0]?.extensions?.code).toBe("NOT_FOUND");
    await sleep(1500); // longer than the owner's check period
    expect((await runOn(owner)).status).toBe("RUNNING");

    // The forward to the owner fails (connection refused): the answer is no error all the same.
    const aborted = await postGraphql(
      other.url,
      `mutation($r: ID!) { abortRun(id: $r) { id } }`,
      { r: run.id },
      token,
    );
    expect(aborted.errors).toBeUndefined();
    expect(aborted.data.abortRun.id).toBe(run.id);
    for (let i = 0; (await runOn(other)).status === "RUNNING"; i++) {
      // Well before the command's 30 s.
      if (i > 100) throw new Error("the run was not aborted");
      await sleep(100);
    }
    const ended = await runOn(other);
    expect(ended).toMatchObject({ status: "ABORTED", killedBy: "abort", output: "started\n" });
    expect(ended.snapshot).not.toBeNull();

    // Aborting a finished run answers its final state, from either instance.
    for (const server of [other, owner])
      expect(
        (await ok(server, `mutation($r: ID!) { abortRun(id: $r) { status } }`, { r: run.id }, token))
          .abortRun,
      ).toEqual({ status: "ABORTED" });
  }, 60_000);
});
