// What is live on this instance now, read at scrape time: sandboxes per provider, live agents,
// collaboration rooms and sockets.
import { Counter, Gauge, type Registry } from "prom-client";
import type { AgentPool } from "../../agent/live/pool.ts";
import type { CollabServer } from "../../collab/server.ts";

/** Branches' live sandboxes on this instance per provider (resolvers/branch-runtime.ts counts them). */
export function sandboxMetrics(
  registry: Registry,
  providers: readonly string[],
  live: { liveByProvider(): Map<string, number> },
): void {
  new Gauge({
    name: "opencode_cloud_sandboxes_live",
    help: "Live branch sandboxes on this instance, by provider",
    labelNames: ["provider"],
    registers: [registry],
    collect() {
      const counts = live.liveByProvider();
      for (const provider of providers) this.set({ provider }, counts.get(provider) ?? 0);
    },
  });
}

/** Live agents (agent/live/pool.ts) and collaboration (collab/server.ts), from their own counts. */
export function liveMetrics(registry: Registry, agents: AgentPool | null, collab: CollabServer): void {
  const registers = [registry];
  new Gauge({
    name: "opencode_cloud_agents_live",
    help: "Live opencode servers on this instance, by whether a turn is running on them",
    labelNames: ["state"],
    registers,
    collect() {
      let busy = 0;
      const all = agents?.list() ?? [];
      for (const agent of all) if (agent.busy) busy++;
      this.set({ state: "busy" }, busy);
      this.set({ state: "idle" }, all.length - busy);
    },
  });
  new Counter({
    name: "opencode_cloud_agents_started_total",
    help: "Live opencode servers started on this instance (first turns, restarts after idling or eviction)",
    registers,
    collect() {
      this.reset();
      this.inc(agents?.starts ?? 0);
    },
  });
  new Gauge({
    name: "opencode_cloud_collab_rooms_loaded",
    help: "Collaboration rooms (chat and file rooms) loaded in memory on this instance",
    registers,
    collect() {
      this.set(collab.loadedRooms);
    },
  });
  new Gauge({
    name: "opencode_cloud_collab_sockets_open",
    help: "Collaboration WebSockets open on this instance",
    registers,
    collect() {
      this.set(collab.openSockets);
    },
  });
}
