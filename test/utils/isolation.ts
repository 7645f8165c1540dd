// What this machine can run, decided once per test run, and the gates that declare the tests needing
// it. Where bubblewrap is missing or cannot build a sandbox (issue 13: no root, no package manager)
// the server still runs, with isolation `none`; the tests that need isolation are then reported as
// skipped, never passed vacuously by an early return and never failed for something unrelated. The
// reason is printed when the first such test is declared, and again at the end of the run beside
// bun's summary as `skipped: <reason>` (test/utils/skip-summary.ts, preloaded by bunfig.toml).
//
//   skip.unlessIsolated("a command cannot see the host", async () => { … });
//   skip.unlessAgent("a prompt streams agent events", async () => { … });
//   skip.describeUnlessFakeContreeProcesses("runs in the fake's VMs", () => { … });
import { describe, test } from "bun:test";
import { opencodeBinary } from "../../agent/opencode-binary.ts";
import { bubblewrapInstalled, detectBubblewrap } from "../../sandbox/local/isolate.ts";
import { probeSandbox } from "../../scripts/fake-contree/vm.ts";

const [localBwrap, fakeSandbox] = await Promise.all([detectBubblewrap(), probeSandbox()]);

/** Why local sandboxes cannot be isolated here (the server's health.isolation is `none`), or null. */
export const isolationUnavailable: string | null = localBwrap
  ? null
  : !bubblewrapInstalled()
    ? "bubblewrap is not installed"
    : // The fake's probe keeps the error that says why (e.g. EACCES, or no user namespaces).
      (fakeSandbox.unavailable ??
      "bubblewrap is installed but cannot create a sandbox here (are user namespaces disabled?)");

/** Why the fake ConTree cannot run processes here (its spawns end FAILED), or null. */
export const fakeContreeProcessesUnavailable: string | null = fakeSandbox.unavailable
  ? (isolationUnavailable ?? fakeSandbox.unavailable)
  : null;

const opencodeMissing = opencodeBinary()
  ? null
  : `the opencode binary is missing (npm package opencode-${process.platform}-${process.arch})`;

/** Why an agent turn cannot run here: isolation first, then the opencode binary; or null. */
export const agentUnavailable: string | null = isolationUnavailable ?? opencodeMissing;

/** Why an agent turn cannot run in the fake ConTree's VM here; or null. */
export const agentInFakeContreeUnavailable: string | null =
  fakeContreeProcessesUnavailable ?? opencodeMissing;

// Shared with the preloaded summary through globalThis (the preload must not pay for the probes).
const REASONS = Symbol.for("opencode-cloud.test.skip-reasons");
const reasons: Set<string> = ((globalThis as Record<symbol, unknown>)[REASONS] as Set<string>) ?? new Set();
(globalThis as Record<symbol, unknown>)[REASONS] = reasons;

function noteSkip(reason: string): void {
  if (reasons.has(reason)) return;
  reasons.add(reason);
  console.warn(`tests that need it are skipped: ${reason}`);
}

/** For `test.skipIf(skipBecause(agentUnavailable))(…)`: whether to skip, noting the reason if so. */
export function skipBecause(unavailable: string | null): boolean {
  if (unavailable !== null) noteSkip(unavailable);
  return unavailable !== null;
}

/** `test` (or `describe`) when `unavailable` is null; else `.skip`, noting the reason for the summary. */
function gate<F extends typeof test | typeof describe>(of: F, unavailable: string | null): F {
  if (unavailable === null) return of;
  const skipped = of.skip as unknown as (...args: unknown[]) => void;
  return ((...args: unknown[]) => {
    noteSkip(unavailable);
    skipped(...args);
  }) as unknown as F;
}

/** A `test` gated on any reason (e.g. a missing tool too): `const it = testUnless(reason)`. */
export const testUnless = (unavailable: string | null): typeof test => gate(test, unavailable);

// Named `skip.…` so that biome formats `skip.unlessAgent("name", async () => {` like a `test(` call
// (one line, body not re-indented) and swapping `test(` for it is a one-line change.
export const skip = {
  /** A test of local sandbox isolation (bubblewrap). */
  unlessIsolated: gate(test, isolationUnavailable),
  describeUnlessIsolated: gate(describe, isolationUnavailable),
  /** A test that runs an agent turn (bubblewrap and the opencode binary). */
  unlessAgent: gate(test, agentUnavailable),
  describeUnlessAgent: gate(describe, agentUnavailable),
  /** A test that runs an agent turn in the fake ConTree's VM (its processes and the opencode binary). */
  unlessAgentInFakeContree: gate(test, agentInFakeContreeUnavailable),
  /** A test that runs processes in the fake ConTree's VMs. */
  unlessFakeContreeProcesses: gate(test, fakeContreeProcessesUnavailable),
  describeUnlessFakeContreeProcesses: gate(describe, fakeContreeProcessesUnavailable),
};
