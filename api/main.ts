// The Bun entry point: load config, start, stop gracefully on SIGTERM/SIGINT.
import { ConfigError, loadConfig } from "./config.ts";
import { bunRuntime } from "./runtime/bun.ts";
import { startServer } from "./start.ts";

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

const server = await startServer(config, bunRuntime).catch((error: unknown) => {
  process.stderr.write(
    `opencode.cloud: failed to start: ${error instanceof Error ? error.message : String(error)}\n`,
  );
  process.exit(1);
});

process.stdout.write(`opencode.cloud is running: GraphiQL at ${server.url}/graphql\n`);

const unregister = bunRuntime.onShutdownSignal(async (signal) => {
  unregister();
  process.stdout.write(`opencode.cloud: ${signal} received, shutting down\n`);
  await server.stop();
  process.exit(0);
});
