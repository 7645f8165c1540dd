// Runs the real entry point (api/main.ts) as a child process, as `npm start` does.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { Subprocess } from "bun";

export interface ServerProcess {
  url: string;
  dataDir: string;
  proc: Subprocess<"ignore", "pipe", "pipe">;
  output(): string;
}

const ROOT = resolve(import.meta.dir, "../..");

export async function spawnServer(
  env: Record<string, string> = {},
  dataDir?: string,
): Promise<ServerProcess> {
  const dir = dataDir ?? mkdtempSync(join(tmpdir(), "occ-proc-"));
  const proc = Bun.spawn([process.execPath, "api/main.ts"], {
    cwd: ROOT,
    env: { ...process.env, PORT: "0", DATA_DIR: dir, NODE_ENV: "test", LOG_LEVEL: "info", ...env },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  let text = "";
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) text += decoder.decode(chunk, { stream: true });
  };
  void pump(proc.stdout);
  void pump(proc.stderr);
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    const match = /GraphiQL at (http:\/\/[^\s]+)\/graphql/.exec(text);
    if (match) return { url: match[1]!, dataDir: dir, proc, output: () => text };
    if (proc.exitCode !== null) break;
    await Bun.sleep(20);
  }
  proc.kill("SIGKILL");
  throw new Error(`server did not start:\n${text}`);
}
