// Listing a huge directory neither freezes the server nor answers with all of it. A run leaves
// 100,000 files in one directory (cheap for its maker); `files` of it, from the snapshot and from the
// live workspace, several at once, answers the first 1,000 while /healthz keeps answering promptly
// (the whole listing once blocked it for 1.25 s), and `fileEntries` pages through any directory by
// path. The snapshot store keeps its manifests within a byte budget, not a count.
import { afterAll, beforeAll, expect, test } from "bun:test";
import * as fs from "node:fs/promises";
import { join } from "node:path";
import { MAX_LISTED_FILES } from "../../resolvers/files.ts";
import { Store } from "../../sandbox/local/store.ts";
import { type Manifest, manifestWeight } from "../../sandbox/manifest.ts";
import { largestInOrder, smallestInOrder, sortInSlices } from "../../sandbox/sorting.ts";
import { codeOf, startTestServer, type TestServer } from "../utils/server.ts";
import { gqlOk, waitForRun } from "../utils/session-fixture.ts";

/** One generous bound for a noisy shared machine, as in freeze.test.ts. */
const MAX_STALL_MS = 500;
const MANY = 100_000;
const SOME = 2_500;

let server: TestServer;
let token: string;
let branchId: string;
let snapshotId: string;

beforeAll(async () => {
  server = await startTestServer();
  token = (await server.signUp()).token;
  branchId = (
    await gqlOk(server, token, `mutation { createSession(input: { title: "many" }) { mainBranch { id } } }`)
  ).createSession.mainBranch.id;
  const command = [
    `mkdir many && (cd many && seq 1 ${MANY} | sed 's/^/a-file-name-of-some-length-/' | xargs touch)`,
    `mkdir some && (cd some && seq 1 ${SOME} | xargs touch)`,
  ].join(" && ");
  const run = (
    await gqlOk(
      server,
      token,
      `mutation($b: ID!, $c: String!) { exec(branchId: $b, command: $c, timeoutMs: 300000) { id } }`,
      { b: branchId, c: command },
    )
  ).exec;
  let status = "RUNNING";
  for (let i = 0; i < 10 && status !== "SUCCEEDED"; i++) status = await waitForRun(server, token, run.id);
  expect(status).toBe("SUCCEEDED");
  snapshotId = (
    await gqlOk(server, token, `query($r: ID!) { run(id: $r) { snapshot { id } } }`, { r: run.id })
  ).run.snapshot.id;
}, 300_000);
afterAll(() => server.close());

/** Polls /healthz every ~20 ms while `work` runs; the worst latency, or gap between answers. */
async function worstStallDuring<T>(work: Promise<T>): Promise<{ result: T; worstMs: number; polls: number }> {
  let done = false;
  let worstMs = 0;
  let polls = 0;
  const settled = work.finally(() => {
    done = true;
  });
  const poll = (async () => {
    let last = performance.now();
    while (!done) {
      const start = performance.now();
      const res = await fetch(`${server.url}/healthz`);
      await res.arrayBuffer();
      const now = performance.now();
      worstMs = Math.max(worstMs, now - start, now - last - 20);
      last = now;
      polls++;
      await Bun.sleep(20);
    }
  })();
  const result = await settled;
  await poll;
  return { result, worstMs, polls };
}

const SNAPSHOT_FILES = `query($s: ID!, $p: String) { snapshot(id: $s) { files(path: $p) { path type } } }`;
const BRANCH_FILES = `query($b: ID!, $p: String) { branch(id: $b) { files(path: $p) { path type } } }`;

test("files of a 100,000-entry directory: the first 1,000 by path, snapshot and live, without stalling /healthz", async () => {
  const { result, worstMs, polls } = await worstStallDuring(
    Promise.all([
      server.gql(SNAPSHOT_FILES, { s: snapshotId, p: "many" }, token),
      server.gql(SNAPSHOT_FILES, { s: snapshotId, p: "many" }, token),
      server.gql(BRANCH_FILES, { b: branchId, p: "many" }, token),
      server.gql(BRANCH_FILES, { b: branchId, p: "many" }, token),
    ]),
  );
  const all = Array.from({ length: MANY }, (_, i) => `many/a-file-name-of-some-length-${i + 1}`).sort();
  for (const res of result) {
    expect(res.errors).toBeUndefined();
    const files = (res.data!.snapshot ?? res.data!.branch).files as { path: string }[];
    expect(files.map((f) => f.path)).toEqual(all.slice(0, MAX_LISTED_FILES));
  }
  expect(polls).toBeGreaterThan(2);
  expect(worstMs).toBeLessThan(MAX_STALL_MS);
}, 60_000);

const PAGE = `query($id: ID!, $p: String, $n: Int, $a: String) {
  snapshot(id: $id) { fileEntries(path: $p, first: $n, after: $a) { edges { cursor node { path } } pageInfo { hasNextPage endCursor } } }
}`;
const LIVE_PAGE = PAGE.replace("snapshot(id: $id)", "branch(id: $id)");

async function everyPage(query: string, id: string, path: string, first: number) {
  const paths: string[] = [];
  let after: string | null = null;
  for (let pages = 0; pages < 100; pages++) {
    const data = await gqlOk(server, token, query, { id, p: path, n: first, a: after });
    const connection = (data.snapshot ?? data.branch).fileEntries;
    paths.push(...connection.edges.map((e: { node: { path: string } }) => e.node.path));
    if (!connection.pageInfo.hasNextPage) return { paths, pages: pages + 1 };
    after = connection.pageInfo.endCursor;
  }
  throw new Error("too many pages");
}

test("fileEntries pages through a directory by path, each entry once, snapshot and live", async () => {
  const all = Array.from({ length: SOME }, (_, i) => `some/${i + 1}`).sort();
  for (const [query, id] of [
    [PAGE, snapshotId],
    [LIVE_PAGE, branchId],
  ] as const) {
    const { paths, pages } = await everyPage(query, id, "some", 1000);
    expect(pages).toBe(3);
    expect(paths).toEqual(all);
  }
  // Deep in the big directory too: the page after a cursor from the middle.
  const first = await gqlOk(server, token, PAGE, { id: snapshotId, p: "many", n: 1000 });
  const cursor = first.snapshot.fileEntries.pageInfo.endCursor;
  const second = await gqlOk(server, token, LIVE_PAGE, { id: branchId, p: "many", n: 5, a: cursor });
  const names = Array.from({ length: MANY }, (_, i) => `many/a-file-name-of-some-length-${i + 1}`).sort();
  expect(second.branch.fileEntries.edges.map((e: { node: { path: string } }) => e.node.path)).toEqual(
    names.slice(1000, 1005),
  );
  expect(second.branch.fileEntries.pageInfo.hasNextPage).toBe(true);
}, 60_000);

test("a cursor this API did not hand out, or a page size out of range, is BAD_USER_INPUT", async () => {
  const bad = await server.gql(PAGE, { id: snapshotId, p: "some", a: "not-a-cursor" }, token);
  expect(bad.errors?.[0]?.extensions).toMatchObject({ code: "BAD_USER_INPUT", field: "after" });
  for (const n of [0, -1, 1001]) {
    const res = await server.gql(LIVE_PAGE, { id: branchId, p: "some", n }, token);
    expect(res.errors?.[0]?.extensions).toMatchObject({ code: "BAD_USER_INPUT", field: "first" });
  }
  const missing = await server.gql(PAGE, { id: snapshotId, p: "nowhere" }, token);
  expect(codeOf(missing)).toBe("NOT_FOUND");
});

test("the store's manifest cache is bounded by bytes, keeps the newest, and records do not hold manifests", async () => {
  const store = new Store(await fs.mkdtemp(join(server.dataDir, "store-")));
  await store.init();
  const manifestOf = (tag: string): Manifest => {
    const manifest: Manifest = new Map([["d", { t: "d", m: 0o755, s: 0 }]]);
    for (let i = 0; i < 60_000; i++)
      manifest.set(`d/${tag}-${i}`, { t: "f", m: 0o644, s: 1, h: "0".repeat(64) });
    return manifest;
  };
  const ids: string[] = [];
  let parent: string | null = null;
  for (const tag of ["a", "b", "c", "d", "e", "f"]) {
    const id = store.newSnapshotId();
    await store.commit({ id, parent, manifest: manifestOf(tag), layers: [] });
    ids.push(id);
    parent = id;
  }
  const one = manifestWeight(manifestOf("a"));
  // Six of ~15 MB each: eight would be cached by count; bytes keep it near the budget.
  expect(store.cachedManifestBytes).toBeLessThanOrEqual(64 * 1024 * 1024);
  expect(store.cachedManifestBytes).toBeGreaterThanOrEqual(one);
  for (const id of ids) expect((await store.record(id)).full).toBeUndefined();
  // An evicted manifest is read back whole from its record.
  const again = await store.manifest(ids[0]!);
  expect(again.size).toBe(60_001);
  expect(again.get("d/a-59999")).toMatchObject({ t: "f", s: 1 });
  expect(store.cachedManifestBytes).toBeLessThanOrEqual(64 * 1024 * 1024);
}, 60_000);

test("sorting in slices orders as Array#sort does (UTF-16 code units), whole or the first few", async () => {
  const names = Array.from({ length: 35_003 }, (_, i) => `${(i * 7919) % 35_003}-${"éa€😀Z_"[i % 6]}`);
  const expected = [...names].sort();
  expect(await sortInSlices([...names])).toEqual(expected);
  expect(await smallestInOrder(names, 1001)).toEqual(expected.slice(0, 1001));
  expect(await smallestInOrder(names.slice(0, 10), 1001)).toEqual([...names.slice(0, 10)].sort());
  expect(await smallestInOrder(names, 0)).toEqual([]);
  // Backward pages of a listing take the largest few, largest first.
  expect(await largestInOrder(names, 1001)).toEqual(expected.slice(-1001).reverse());
  expect(await largestInOrder(names.slice(0, 10), 1001)).toEqual([...names.slice(0, 10)].sort().reverse());
  expect(await largestInOrder(names, 0)).toEqual([]);
});
