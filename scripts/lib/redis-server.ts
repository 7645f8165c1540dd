// A throwaway redis-server for tests and benchmarks: a free loopback port, a temporary directory, no
// persistence, and the settings the platform documents for production (noeviction). Stopped by the
// caller, and killed with this process whatever happens.
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";

export interface RedisServer {
  url: string;
  port: number;
  pid: number;
  /** Runs redis-cli against it; returns its output. */
  cli(...args: string[]): Promise<string>;
  stop(): Promise<void>;
}

/** Where redis-server is, or null (tests say how to install it). */
export function redisServerBinary(): string | null {
  return Bun.which("redis-server") ?? (Bun.which("redis-server", { PATH: "/usr/sbin:/usr/bin" }) || null);
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

export async function startRedisServer(): Promise<RedisServer> {
  const binary = redisServerBinary();
  if (!binary) throw new Error("redis-server is not installed (Debian: apt-get install redis-server)");
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), "occ-redis-"));
    const proc: Subprocess<"ignore", "pipe", "pipe"> = Bun.spawn(
      [
        binary,
        "--port",
        String(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        dir,
        "--save",
        "",
        "--appendonly",
        "no",
        "--maxmemory-policy",
        "noeviction",
        "--loglevel",
        "warning",
      ],
      { stdin: "ignore", stdout: "pipe", stderr: "pipe" },
    );
    process.on("exit", () => proc.kill("SIGKILL"));
    const cli = async (...args: string[]) =>
      (await Bun.$`redis-cli -p ${port} ${args}`.quiet().nothrow()).stdout.toString().trim();
    const deadline = Date.now() + 10_000;
    let ready = false;
    while (Date.now() < deadline && proc.exitCode === null) {
      if ((await cli("PING")) === "PONG") {
        ready = true;
        break;
      }
      await Bun.sleep(20);
    }
    if (!ready) {
      proc.kill("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
      // Another process may have taken the port between our probe and the server's bind.
      if (attempt < 3) continue;
      throw new Error(`redis-server did not start on port ${port}`);
    }
    return {
      url: `redis://127.0.0.1:${port}`,
      port,
      pid: proc.pid,
      cli,
      async stop() {
        proc.kill("SIGTERM");
        await proc.exited;
        rmSync(dir, { recursive: true, force: true });
      },
    };
  }
}
