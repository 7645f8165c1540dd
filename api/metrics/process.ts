// Process metrics (CPU, memory, file descriptors, heap, event loop) from prom-client's default
// collectors, only those that report real values on the runtime we run on. Checked on Bun 1.x and
// Deno 2.x (a 300 ms busy loop, live sockets and timers, forced collections): collectors that read
// /proc or process.cpuUsage/memoryUsage work on both; on Bun the active handle/resource/request counts
// are always 0 and the heap-space figures are zeros from an emulation; on Deno the event-loop delay
// monitor misses a 300 ms block; neither emits GC entries; both report a Node version of their own.
// Those are left out rather than exported as numbers that look real.
import { createRequire } from "node:module";
import { Registry } from "prom-client";

type Collector = (registry: Registry, config: { eventLoopMonitoringPrecision: number }) => void;

const EVERYWHERE = [
  "processCpuTotal",
  "processStartTime",
  "osMemoryHeap",
  "processOpenFileDescriptors",
  "processMaxFileDescriptors",
  "heapSizeAndUsed",
];
const BY_RUNTIME: Record<string, string[]> = {
  bun: ["eventLoopLag"],
  deno: ["processHandles", "processResources", "heapSpacesSizeAndUsed"],
};
// Anything else is Node, where prom-client's whole default set works.
const NODE = [
  "eventLoopLag",
  "processHandles",
  "processResources",
  "processRequests",
  "heapSpacesSizeAndUsed",
  "version",
  "gc",
];

let shared: Registry | undefined;

/**
 * The process's own registry, made once: the collectors describe the process, not a server, and some
 * (the event-loop monitor) cannot be stopped, so several servers in one process (tests) share it.
 */
export function processRegistry(runtime: string): Registry {
  if (shared) return shared;
  const registry = new Registry();
  // The individual collectors are prom-client's own modules (its package has no exports map), so the
  // choice per runtime needs no copy of their code.
  const load = createRequire(import.meta.url);
  // The runtime's name as the adapters give it, e.g. "bun 1.4.5" or "deno 2.9.6".
  const kind = runtime.split(" ")[0]!;
  for (const name of [...EVERYWHERE, ...(BY_RUNTIME[kind] ?? NODE)]) {
    const collector = load(`prom-client/lib/metrics/${name}`) as Collector;
    collector(registry, { eventLoopMonitoringPrecision: 10 });
  }
  shared = registry;
  return registry;
}
