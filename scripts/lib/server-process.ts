// The real server as a child process (what `npm start` runs), for benchmarks: a fresh data
// directory, the URL read from its start-up line, a GraphQL helper, and a stop that cleans up.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "../..");

export interface ServerProcess {
  url: string;
  /** From spawn to the start-up line. */
  startedInMs: number;
  pid: number;
  gql(query: string, variables?: Record<string, unknown>, token?: string): Promise<any>;
  stop(): Promise<void>;
}

export async function startServerProcess(env: Record<string, string> = {}): Promise<ServerProcess> {
  const dataDir = mkdtempSync(join(tmpdir(), "occ-bench-"));
  const t0 = performance.now();
  const proc = Bun.spawn([process.execPath, "api/main.ts"], {
    cwd: ROOT,
    env: { ...process.env, PORT: "0", DATA_DIR: dataDir, LOG_LEVEL: "warn", ...env },
    stdout: "pipe",
    stderr: "inherit",
  });
  // Whatever happens in the benchmark, the server goes down with it.
  process.on("exit", () => proc.kill("SIGKILL"));
  let out = "";
  const reader = proc.stdout.getReader();
  let url: string | undefined;
  while (!url) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`server exited: ${out}`);
    out += new TextDecoder().decode(value);
    url = /GraphiQL at (http:\/\/\S+)\/graphql/.exec(out)?.[1];
  }
  reader.releaseLock();
  const base = url;
  return {
    url: base,
    startedInMs: performance.now() - t0,
    pid: proc.pid,
    async gql(query, variables = {}, token) {
      const res = await fetch(`${base}/graphql`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          ...(token ? { authorization: `Bearer ${token}` } : {}),
        },
        body: JSON.stringify({ query, variables }),
      });
      const body = (await res.json()) as { data?: any; errors?: unknown };
      if (body.errors) throw new Error(JSON.stringify(body.errors));
      return body.data;
    },
    async stop() {
      proc.kill("SIGTERM");
      await proc.exited;
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
