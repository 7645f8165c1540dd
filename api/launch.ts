// The process entry, whatever the runtime: load config, start, stop gracefully on SIGTERM/SIGINT.
// api/main.ts (Bun) and api/main-deno.ts (Deno) only pick the runtime adapter.
import { ConfigError, loadConfig } from "./config.ts";
import type { Runtime } from "./runtime/types.ts";
import { startServer } from "./start.ts";

export async function launch(runtime: Runtime): Promise<void> {
  /** Status lines for whoever started us; a closed stdout (EPIPE) must not stop a shutdown. */
  process.stdout.on("error", () => {});
  const say = (line: string): void => {
    try {
      process.stdout.write(`${line}\n`);
    } catch {}
  };

  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`opencode.cloud: invalid configuration: ${error.message}\n`);
      process.exit(78); // EX_CONFIG
    }
    throw error;
  }

  const server = await startServer(config, runtime).catch((error: unknown) => {
    // A setting the profile cannot run with (api/profile.ts) is a configuration error too.
    if (error instanceof ConfigError) {
      process.stderr.write(`opencode.cloud: invalid configuration: ${error.message}\n`);
      process.exit(78);
    }
    process.stderr.write(
      `opencode.cloud: failed to start: ${error instanceof Error ? error.message : String(error)}\n`,
    );
    process.exit(1);
  });

  say(`opencode.cloud is running (${runtime.name}): GraphiQL at ${server.url}/graphql`);

  const unregister = runtime.onShutdownSignal(async (signal) => {
    unregister();
    say(`opencode.cloud: ${signal} received, shutting down`);
    await server.stop();
    process.exit(0);
  });
}
