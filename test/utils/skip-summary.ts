// Preloaded by bunfig.toml for every test run: at the end, just before bun's summary, one line
// `skipped: <reason>; <reason>` naming why tests were skipped (the gates of test/utils/isolation.ts
// note the reasons), so that " N skip" never stands unexplained. .ci/run repeats the line just above
// its own "N passed, N failed, N skipped". Nothing is printed when nothing was skipped for a reason.
import { afterAll } from "bun:test";

const REASONS = Symbol.for("opencode-cloud.test.skip-reasons");

afterAll(() => {
  const reasons = (globalThis as Record<symbol, unknown>)[REASONS] as Set<string> | undefined;
  if (reasons?.size) console.log(`skipped: ${[...reasons].join("; ")}`);
});
