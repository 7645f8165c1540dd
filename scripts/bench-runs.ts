// Latencies a user feels, measured through the public API of a real server process:
// - exec mutation sent -> first output chunk received on runOutput (graphql-ws)
// - fork mutation sent -> the new branch ran a command (its first output chunk received)
// Prints medians and p95 over N repetitions.
//
//   bun scripts/bench-runs.ts [--reps 30]
import { parseArgs } from "node:util";
import { createClient } from "graphql-ws";
import { startServerProcess } from "./lib/server-process.ts";

const { values } = parseArgs({ options: { reps: { type: "string", default: "30" } } });
const REPS = Number(values.reps);

process.on("uncaughtException", (error) => {
  console.error(error);
  process.exit(1);
});
const server = await startServerProcess({}, { echoStderr: true });
const url = server.url;
const gql = server.gql;

const token = (
  await gql(`mutation { register(email: "bench@example.com", password: "password123") { token } }`)
).register.token;
const client = createClient({
  url: `${url!.replace("http", "ws")}/graphql`,
  connectionParams: { token },
  lazy: false,
});
const session = (
  await gql(
    `mutation($f: JSON) { createSession(input: { title: "bench", files: $f }) { id mainBranch { id head { id } } } }`,
    { f: { "a.txt": "x" } },
    token,
  )
).createSession;

/** Sends exec on a branch; resolves with ms until its first output chunk arrives over graphql-ws. */
async function execToFirstChunk(branchId: string, t0 = performance.now()): Promise<number> {
  const run = (
    await gql(`mutation($b: ID!) { exec(branchId: $b, command: "echo hi") { id } }`, { b: branchId }, token)
  ).exec;
  return new Promise<number>((resolvePromise, reject) => {
    let first: number | undefined;
    const dispose = client.subscribe(
      { query: `subscription($r: ID!) { runOutput(runId: $r) { __typename } }`, variables: { r: run.id } },
      {
        next: (result) => {
          const type = (result.data as { runOutput: { __typename: string } }).runOutput.__typename;
          if (type === "RunOutputChunk" && first === undefined) first = performance.now() - t0;
          if (type === "RunFinished") {
            dispose();
            resolvePromise(first ?? Number.NaN);
          }
        },
        error: reject,
        complete: () => {},
      },
    );
  });
}

const stats = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const at = (p: number) => s[Math.min(s.length - 1, Math.floor(s.length * p))]!;
  return `median ${at(0.5).toFixed(1)} ms, p95 ${at(0.95).toFixed(1)} ms, min ${s[0]!.toFixed(1)} ms (n=${s.length})`;
};

await execToFirstChunk(session.mainBranch.id); // warm-up
const execLatencies: number[] = [];
for (let i = 0; i < REPS; i++) execLatencies.push(await execToFirstChunk(session.mainBranch.id));

const forkLatencies: number[] = [];
for (let i = 0; i < REPS; i++) {
  const t0 = performance.now();
  const branch = (
    await gql(
      `mutation($s: ID!, $n: String!) { fork(snapshotId: $s, name: $n) { id } }`,
      { s: session.mainBranch.head.id, n: `f${i}` },
      token,
    )
  ).fork;
  forkLatencies.push(await execToFirstChunk(branch.id, t0));
}

const health = (await gql(`{ health { isolation workspaces } }`)).health;
console.log(
  `server: isolation ${health.isolation}, ${health.workspaces} workspaces; ${navigator.hardwareConcurrency} cores`,
);
console.log(`exec mutation -> first output chunk on runOutput:   ${stats(execLatencies)}`);
console.log(`fork mutation -> new branch ran a command (1st chunk): ${stats(forkLatencies)}`);

await client.dispose();
await server.stop();
