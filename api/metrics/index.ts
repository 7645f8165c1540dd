// The platform's Prometheus metrics for one server instance: a registry of its own (several servers
// in one process, as in tests, each report their own), fed by collectors that read live state at
// scrape time and by the bus events this instance publishes; process metrics are shared per process.
import type { Plugin } from "graphql-yoga";
import { Gauge, Registry } from "prom-client";
import type { AgentPool } from "../../agent/live/pool.ts";
import type { Bus } from "../../bus/bus.ts";
import type { CollabServer } from "../../collab/server.ts";
import type { Db } from "../../db/client.ts";
import type { SessionEventPayload } from "../../resolvers/events.ts";
import type { Config } from "../config.ts";
import type { RunningServer, Runtime } from "../runtime/types.ts";
import { observeBus } from "./bus.ts";
import { type MetricsHandler, metricsHandler, serveMetrics } from "./endpoint.ts";
import { graphqlMetrics } from "./graphql.ts";
import { liveMetrics, sandboxMetrics } from "./live.ts";
import { processRegistry } from "./process.ts";
import { runMetrics } from "./runs.ts";
import { storageMetrics } from "./storage.ts";

export interface Metrics {
  /** The yoga plugin behind the GraphQL families. */
  graphql: Plugin;
  /** /metrics on the API's listener; null when it is served on a listener of its own. */
  onApiListener: MetricsHandler | null;
  /** The bus, observed: every part of the server should use this one. */
  observeBus(bus: Bus): Bus;
  /** Reads the branches' live sandboxes per provider at scrape time. */
  observeSandboxes(providers: readonly string[], live: { liveByProvider(): Map<string, number> }): void;
  /** Reads live agents and collaboration rooms and sockets at scrape time. */
  observeLive(agents: AgentPool | null, collab: CollabServer): void;
  /** Starts the separate listener when one is configured; null otherwise. */
  listen(runtime: Runtime): RunningServer | null;
}

/** Metrics for one instance, or null when /metrics is off (nothing is collected then). */
export function createMetrics(options: {
  config: Config;
  db: Db;
  runtime: string;
  version: string;
}): Metrics | null {
  const { config, db } = options;
  if (!config.metrics.enabled) return null;
  const registry = new Registry();
  new Gauge({
    name: "opencode_cloud_build_info",
    help: "The server's version and runtime (always 1)",
    labelNames: ["version", "runtime"],
    registers: [registry],
  }).set({ version: options.version, runtime: options.runtime }, 1);
  const runs = runMetrics(registry, db);
  const storage = storageMetrics(registry, db, config.metrics.storageRefreshMs);
  const processes = processRegistry(options.runtime);

  const handle = metricsHandler({
    token: config.metrics.token,
    scrape: async () => ({
      text: (await registry.metrics()) + (await processes.metrics()),
      contentType: registry.contentType,
    }),
  });
  return {
    graphql: graphqlMetrics(registry),
    onApiListener: config.metrics.listener ? null : handle,
    observeBus: (bus) =>
      observeBus(bus, registry, (topic, payload) => {
        if (!topic.startsWith("session:")) return;
        const event = payload as SessionEventPayload;
        if (event.kind === "SNAPSHOT_ADDED") storage.snapshotRecorded();
        else runs.observe(event);
      }),
    observeSandboxes: (providers, live) => sandboxMetrics(registry, providers, live),
    observeLive: (agents, collab) => liveMetrics(registry, agents, collab),
    listen: (runtime) =>
      config.metrics.listener ? serveMetrics(runtime, config.metrics.listener, handle) : null,
  };
}
