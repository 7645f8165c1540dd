// A chatty run cannot fill the database: past RUN_EVENTS_MAX_EVENTS its stored record ends with a
// RunTrailTruncated marker that live subscribers see at the same place; the rest streams live only,
// and the finished run replays the stored part, the marker and RunFinished (seq numbers as streamed).
import { afterAll, beforeAll, expect, test } from "bun:test";
import { startTestServer, type TestServer } from "../utils/server.ts";
import { collect, wsClient } from "../utils/ws.ts";

let server: TestServer;
let token: string;
beforeAll(async () => {
  server = await startTestServer({ RUN_EVENTS_MAX_EVENTS: "10" });
  token = (await server.signUp()).token;
});
afterAll(() => server.close());

const RUN_OUTPUT = `subscription($r: ID!) { runOutput(runId: $r) {
  __typename
  ... on RunOutputChunk { seq stream text }
  ... on RunTrailTruncated { seq storedEvents maxEvents }
  ... on RunFinished { seq status exitCode }
} }`;

async function follow(runId: string) {
  const client = wsClient(server.wsUrl, token);
  const out = collect(client, RUN_OUTPUT, { r: runId });
  await out.until((r) => r.data?.runOutput.__typename === "RunFinished", 60_000);
  await client.dispose();
  return out.results.map((r) => r.data.runOutput);
}

test("past the cap, a marker; live gets everything, the replay the stored part, the marker and the end", async () => {
  const s = (
    await server.gql(
      `mutation { createSession(input: { title: "chatty" }) { mainBranch { id } } }`,
      {},
      token,
    )
  ).data!.createSession;
  const run = (
    await server.gql(
      `mutation($b: ID!) { exec(branchId: $b, command: "for i in $(seq 1 30); do echo line $i; sleep 0.02; done") { id } }`,
      { b: s.mainBranch.id },
      token,
    )
  ).data!.exec;
  const live = await follow(run.id);
  expect(live.map((e) => e.seq)).toEqual(live.map((_, i) => i + 1));
  // Live: every line, with the marker where the record was cut.
  expect(
    live
      .filter((e) => e.__typename === "RunOutputChunk")
      .map((e) => e.text)
      .join(""),
  ).toBe(Array.from({ length: 30 }, (_, i) => `line ${i + 1}\n`).join(""));
  const markers = live.filter((e) => e.__typename === "RunTrailTruncated");
  expect(markers).toEqual([{ __typename: "RunTrailTruncated", seq: 11, storedEvents: 10, maxEvents: 10 }]);

  const replay = await follow(run.id);
  expect(replay).toEqual([...live.slice(0, 11), live.at(-1)]);
  expect(replay.at(-1)).toMatchObject({ __typename: "RunFinished", status: "SUCCEEDED", exitCode: 0 });
}, 60_000);
