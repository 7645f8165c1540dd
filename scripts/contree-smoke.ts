// The branching scenario on the `contree` provider, through the platform's GraphQL API, with each
// step's latency printed. Against the real service when CONTREE_API_KEY (and CONTREE_PROJECT for IAM
// tokens; CONTREE_URL and CONTREE_IMAGE optional) are set; skipped with a message otherwise.
// `--fake` runs the same scenario against the fake ConTree (scripts/fake-contree.ts) instead.
//
//   CONTREE_API_KEY=... CONTREE_PROJECT=... bun scripts/contree-smoke.ts
//   bun scripts/contree-smoke.ts --fake
import { startFakeContree } from "./fake-contree/index.ts";
import { startServerProcess } from "./lib/server-process.ts";

const useFake = process.argv.includes("--fake");
const key = process.env.CONTREE_API_KEY ?? process.env.CONTREE_TOKEN;
if (!useFake && !key) {
  console.log(
    "contree-smoke: skipped: set CONTREE_API_KEY (and CONTREE_PROJECT) to run against the real ConTree, " +
      "or pass --fake to run against the fake.",
  );
  process.exit(0);
}

const fake = useFake ? await startFakeContree() : null;
const env: Record<string, string> = fake
  ? { CONTREE_URL: fake.url, CONTREE_API_KEY: fake.token, CONTREE_PROJECT: fake.project ?? "" }
  : {
      CONTREE_API_KEY: key!,
      ...(process.env.CONTREE_PROJECT ? { CONTREE_PROJECT: process.env.CONTREE_PROJECT } : {}),
      ...(process.env.CONTREE_URL ? { CONTREE_URL: process.env.CONTREE_URL } : {}),
      ...(process.env.CONTREE_IMAGE ? { CONTREE_IMAGE: process.env.CONTREE_IMAGE } : {}),
    };
const server = await startServerProcess({ ...env, SANDBOX_PROVIDER: "contree" }, { echoStderr: true });
const rows: [string, number, string][] = [];

async function step<T>(name: string, work: () => Promise<T>, describe: (value: T) => string = () => "") {
  const t0 = performance.now();
  const value = await work();
  const ms = performance.now() - t0;
  rows.push([name, ms, describe(value)]);
  console.log(`${name.padEnd(34)} ${ms.toFixed(0).padStart(7)} ms  ${describe(value)}`);
  return value;
}

async function runToEnd(token: string, branchId: string, command: string) {
  const { id } = (
    await server.gql(
      `mutation($b: ID!, $c: String!) { exec(branchId: $b, command: $c) { id } }`,
      { b: branchId, c: command },
      token,
    )
  ).exec;
  for (;;) {
    const run = (
      await server.gql(
        `query($r: ID!) { run(id: $r) { status exitCode output snapshot { id } } }`,
        { r: id },
        token,
      )
    ).run;
    if (!["QUEUED", "RUNNING"].includes(run.status)) {
      if (run.status !== "SUCCEEDED") throw new Error(`run ${command} ended ${run.status}: ${run.output}`);
      return run;
    }
    await Bun.sleep(50);
  }
}

try {
  console.log(
    `contree-smoke against ${fake ? `the fake at ${fake.url}` : (env.CONTREE_URL ?? "the default ConTree URL")}`,
  );
  const health = (await server.gql(`{ health { providers { name default warnings } } }`)).health;
  console.log(`providers: ${JSON.stringify(health.providers)}`);
  const { token } = (
    await server.gql(
      `mutation { register(email: "smoke@example.com", password: "smoke-password") { token } }`,
    )
  ).register;
  const session = await step(
    "createSession (files)",
    async () =>
      (
        await server.gql(
          `mutation($f: JSON) { createSession(input: { title: "smoke", provider: "contree", files: $f }) {
            id mainBranch { id head { id } } } }`,
          { f: { "src/value.txt": "ok\n", "test.sh": "#!/bin/sh\ncat src/value.txt\n" } },
          token,
        )
      ).createSession,
    (s) => `head ${s.mainBranch.head.id}`,
  );
  const main = session.mainBranch.id;
  const afterRun = await step(
    "exec (sh test.sh) -> snapshot",
    () => runToEnd(token, main, "sh test.sh"),
    (r) => `output ${JSON.stringify(r.output)}`,
  );
  const checkpoint = await step(
    "checkpoint",
    async () =>
      (
        await server.gql(
          `mutation($b: ID!) { checkpoint(branchId: $b, label: "smoke") { id } }`,
          { b: main },
          token,
        )
      ).checkpoint,
  );
  const [forkA, forkB] = await step("fork x2", () =>
    Promise.all(
      ["a", "b"].map(
        async (name) =>
          (
            await server.gql(
              `mutation($s: ID!, $n: String!) { fork(snapshotId: $s, name: $n) { id } }`,
              { s: checkpoint.id, n: name },
              token,
            )
          ).fork,
      ),
    ),
  );
  await step("writeFile on fork a", () =>
    server.gql(
      `mutation($b: ID!) { writeFile(branchId: $b, path: "src/value.txt", content: "A\\n") { id } }`,
      { b: forkA!.id },
      token,
    ),
  );
  const runB = await step("exec on fork b (parallel VM)", () =>
    runToEnd(token, forkB!.id, "echo B > src/value.txt && echo extra > b.txt"),
  );
  const diff = await step(
    "diff checkpoint -> fork b",
    async () =>
      (
        await server.gql(
          `query($f: ID!, $t: ID!) { diff(from: $f, to: $t) { files { path change } } }`,
          { f: checkpoint.id, t: runB.snapshot.id },
          token,
        )
      ).diff.files,
    (files) => files.map((f: { path: string; change: string }) => `${f.change} ${f.path}`).join(", "),
  );
  if (diff.length !== 2) throw new Error(`expected 2 changed files, got ${JSON.stringify(diff)}`);
  await step("file of a snapshot", () =>
    server.gql(
      `query($s: ID!) { snapshot(id: $s) { file(path: "src/value.txt") { content } } }`,
      { s: afterRun.snapshot.id },
      token,
    ),
  );
  await step("rollback fork b", () =>
    server.gql(
      `mutation($b: ID!, $s: ID!) { rollback(branchId: $b, snapshotId: $s) { id } }`,
      { b: forkB!.id, s: checkpoint.id },
      token,
    ),
  );
  const after = await step(
    "exec after rollback",
    () => runToEnd(token, forkB!.id, "cat src/value.txt; ls"),
    (r) => JSON.stringify(r.output),
  );
  if (!after.output.startsWith("ok\n")) throw new Error("rollback did not restore the file");
  await step("promote fork a", () =>
    server.gql(`mutation($b: ID!) { promote(branchId: $b) { id } }`, { b: forkA!.id }, token),
  );
  const total = rows.reduce((sum, [, ms]) => sum + ms, 0);
  console.log(`contree-smoke: ok, ${rows.length} steps, ${total.toFixed(0)} ms in total`);
} catch (error) {
  console.error(`contree-smoke: FAILED: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 1;
} finally {
  await server.stop();
  await fake?.close();
}
