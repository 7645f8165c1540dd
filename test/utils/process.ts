// Runs the real entry point (api/main.ts) as a child process, as `npm start` does, for tests that kill
// and restart it (on the same data directory when given); api/main-deno.ts with TEST_RUNTIME=deno.
import { type ServerProcess, startServerProcess } from "../../scripts/lib/server-process.ts";
import { testRuntime } from "./server.ts";

export type { ServerProcess };

export function spawnServer(env: Record<string, string> = {}, dataDir?: string): Promise<ServerProcess> {
  return startServerProcess(
    { NODE_ENV: "test", LOG_LEVEL: "info", ...env },
    { dataDir, runtime: testRuntime },
  );
}
