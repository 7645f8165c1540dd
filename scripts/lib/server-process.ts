// The real server as a child process (what `npm start` runs), for benchmarks and for tests that kill
// and restart it: a data directory (fresh, or a given one to restart on), the URL read from its
// start-up line, its output, a GraphQL helper, and a stop that cleans up.
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { Subprocess } from "bun";

const ROOT = resolve(import.meta.dir, "../..");

/** The runtimes the platform runs on: Bun (`npm start`) and Deno (`npm run start:deno`). */
export type ServerRuntime = "bun" | "deno";

/** The deno binary from the npm package (a dependency, like bun), or null when it is not installed. */
export function denoBinary(): string | null {
  const bin = join(ROOT, "node_modules", ".bin", "deno");
  return existsSync(bin) ? bin : null;
}

/** The command `npm start` / `npm run start:deno` runs, with this checkout's binaries. */
function entryCommand(runtime: ServerRuntime): string[] {
  if (runtime === "bun") return [process.execPath, "api/main.ts"];
  const deno = denoBinary();
  if (!deno) throw new Error("deno is not installed (npm install: it is a dependency)");
  // -A: the platform needs all of it (network, files, env, subprocesses, the native libSQL binding).
  return [deno, "run", "-A", "api/main-deno.ts"];
}

export interface ServerProcess {
  url: string;
  dataDir: string;
  /** From spawn to the start-up line. */
  startedInMs: number;
  pid: number;
  proc: Subprocess<"ignore", "pipe", "pipe">;
  /** Everything it printed so far (stdout and stderr). */
  output(): string;
  /** GraphQL over HTTP; throws on errors. */
  gql(query: string, variables?: Record<string, unknown>, token?: string): Promise<any>;
  /** SIGTERM, wait, and remove the data directory. */
  stop(): Promise<void>;
  /** SIGKILL (a crash: nothing is cleaned up, the data directory stays), and wait for the exit. */
  kill(): Promise<void>;
}

export interface ServerProcessOptions {
  /** Start on this data directory (a restart) instead of a fresh one. */
  dataDir?: string;
  /** Also copy the server's stderr to ours (benchmarks, so errors show). */
  echoStderr?: boolean;
  /** The runtime to start it on (Bun by default). */
  runtime?: ServerRuntime;
}

export async function startServerProcess(
  env: Record<string, string> = {},
  options: ServerProcessOptions = {},
): Promise<ServerProcess> {
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), "occ-proc-"));
  const t0 = performance.now();
  const proc = Bun.spawn(entryCommand(options.runtime ?? "bun"), {
    cwd: ROOT,
    env: { ...process.env, PORT: "0", DATA_DIR: dataDir, LOG_LEVEL: "warn", ...env },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  // Whatever happens to the caller, the server goes down with it.
  process.on("exit", () => proc.kill("SIGKILL"));
  let text = "";
  let started!: (url: string) => void;
  const url = new Promise<string>((resolve) => {
    started = resolve;
  });
  const pump = async (stream: ReadableStream<Uint8Array>, echo: boolean) => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) {
      text += decoder.decode(chunk, { stream: true });
      if (echo) process.stderr.write(chunk);
      const found = /GraphiQL at (http:\/\/\S+)\/graphql/.exec(text)?.[1];
      if (found) started(found);
    }
  };
  void pump(proc.stdout, false);
  void pump(proc.stderr, options.echoStderr ?? false);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const failed = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error("timed out")), 20_000);
    void proc.exited.then(() => reject(new Error(`exited with ${proc.exitCode}`)));
  });
  let base: string;
  try {
    base = await Promise.race([url, failed]);
  } catch (error) {
    proc.kill("SIGKILL");
    throw new Error(`server did not start (${(error as Error).message}):\n${text}`);
  } finally {
    clearTimeout(timer);
  }
  failed.catch(() => {}); // a later exit is the caller's business
  return {
    url: base,
    dataDir,
    startedInMs: performance.now() - t0,
    pid: proc.pid,
    proc,
    output: () => text,
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
    async kill() {
      proc.kill("SIGKILL");
      await proc.exited;
    },
    async stop() {
      proc.kill("SIGTERM");
      await proc.exited;
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
