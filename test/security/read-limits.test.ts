// Reading a file costs the server no more than the file it may return. A sparse 256 MiB file costs
// its maker nothing on disk; `file(path)` of it (three at once, live and from a snapshot, and a file
// room opened on it) is refused as PAYLOAD_TOO_LARGE with its size, from its size, without the server
// ever holding it: the server runs in this process, so its RSS is ours to read. The limit's edges,
// the per-operation budget for aliased reads, and a file growing while it is read are checked too.
import { afterAll, beforeAll, expect, test } from "bun:test";
import * as fs from "node:fs/promises";
import { join } from "node:path";
import { FILE_PAGE, MAX_READ_BYTES, MAX_READ_BYTES_PER_OPERATION } from "../../resolvers/files.ts";
import { readAtMost } from "../../sandbox/local/bounded-read.ts";
import { FileTooLargeError } from "../../sandbox/provider.ts";
import { connectRoom, type RoomClient } from "../utils/collab.ts";
import { codeOf, startTestServer, type TestServer } from "../utils/server.ts";
import { gqlOk, waitForRun } from "../utils/session-fixture.ts";

const SPARSE = 256 * 1024 * 1024;
/** Far below what reading the sparse file even once would take (three reads held 5 GB before). */
const MAX_RSS_GROWTH = 128 * 1024 * 1024;

let server: TestServer;
let owner: string;
let viewer: string;
let branchId: string;
let snapshotId: string;
const rooms: RoomClient[] = [];

beforeAll(async () => {
  server = await startTestServer();
  owner = (await server.signUp()).token;
  const viewerAccount = await server.signUp();
  viewer = viewerAccount.token;
  const session = (
    await gqlOk(
      server,
      owner,
      `mutation { createSession(input: { title: "reads", files: { a: "x" } }) { id mainBranch { id } } }`,
    )
  ).createSession;
  branchId = session.mainBranch.id;
  await gqlOk(
    server,
    owner,
    `mutation($s: ID!, $e: String!) { shareSession(sessionId: $s, email: $e, role: VIEWER) { role } }`,
    { s: session.id, e: viewerAccount.email },
  );
  const command = [
    `truncate -s ${SPARSE} big`,
    `truncate -s ${MAX_READ_BYTES} edge`,
    `truncate -s ${MAX_READ_BYTES + 1} over`,
    // 9 MiB of text: four of them are more than one operation may read.
    `head -c ${9 * 1024 * 1024} /dev/zero | tr '\\0' a > nine`,
  ].join(" && ");
  const run = (
    await gqlOk(server, owner, `mutation($b: ID!, $c: String!) { exec(branchId: $b, command: $c) { id } }`, {
      b: branchId,
      c: command,
    })
  ).exec;
  expect(await waitForRun(server, owner, run.id)).toBe("SUCCEEDED");
  snapshotId = (
    await gqlOk(server, owner, `query($r: ID!) { run(id: $r) { snapshot { id } } }`, { r: run.id })
  ).run.snapshot.id;
}, 60_000);
afterAll(async () => {
  for (const room of rooms) room.provider.destroy();
  await server.close();
});

const rss = () => process.memoryUsage().rss;
const BRANCH_FILE = `query($b: ID!, $p: String!) { branch(id: $b) { file(path: $p) { size encoding } } }`;
const SNAPSHOT_FILE = `query($s: ID!, $p: String!) { snapshot(id: $s) { file(path: $p) { size } } }`;

function expectTooLarge(res: Awaited<ReturnType<TestServer["gql"]>>, size: number) {
  expect(res.errors?.[0]?.extensions).toMatchObject({
    code: "PAYLOAD_TOO_LARGE",
    size,
    maxBytes: MAX_READ_BYTES,
  });
}

test("a viewer's three concurrent reads of a sparse 256 MiB file are refused with its size; RSS stays put", async () => {
  Bun.gc(true);
  const before = rss();
  const reads = await Promise.all(
    [1, 2, 3].map(() => server.gql(BRANCH_FILE, { b: branchId, p: "big" }, viewer)),
  );
  const fromSnapshot = await Promise.all(
    [1, 2, 3].map(() => server.gql(SNAPSHOT_FILE, { s: snapshotId, p: "big" }, viewer)),
  );
  const grown = rss() - before;
  for (const res of [...reads, ...fromSnapshot]) expectTooLarge(res, SPARSE);
  expect(grown).toBeLessThan(MAX_RSS_GROWTH);
});

test("the limit is exact: 10 MiB is read, one byte more is refused, live and from the snapshot", async () => {
  const edge = await server.gql(BRANCH_FILE, { b: branchId, p: "edge" }, viewer);
  expect(edge.errors).toBeUndefined();
  expect(edge.data!.branch.file).toEqual({ size: MAX_READ_BYTES, encoding: "base64" });
  expectTooLarge(await server.gql(BRANCH_FILE, { b: branchId, p: "over" }, viewer), MAX_READ_BYTES + 1);
  const snapEdge = await server.gql(SNAPSHOT_FILE, { s: snapshotId, p: "edge" }, viewer);
  expect(snapEdge.data?.snapshot.file).toEqual({ size: MAX_READ_BYTES });
  expectTooLarge(await server.gql(SNAPSHOT_FILE, { s: snapshotId, p: "over" }, viewer), MAX_READ_BYTES + 1);
});

test("aliased reads share one budget per operation: past it, the rest are PAYLOAD_TOO_LARGE", async () => {
  const aliases = [1, 2, 3, 4].map((i) => `f${i}: file(path: "nine") { size }`).join(" ");
  const res = await server.gql(`query($b: ID!) { branch(id: $b) { ${aliases} } }`, { b: branchId }, viewer);
  const read = Object.values((res.data?.branch ?? {}) as Record<string, { size: number } | null>).filter(
    (f) => f !== null,
  );
  // 4 × 9 MiB is over 32 MiB: three are answered, the fourth refused (typed, with the budget).
  expect(read.length).toBe(Math.floor(MAX_READ_BYTES_PER_OPERATION / (9 * 1024 * 1024)));
  expect(res.errors).toHaveLength(1);
  expect(codeOf(res)).toBe("PAYLOAD_TOO_LARGE");
  expect(res.errors?.[0]?.extensions).toMatchObject({ maxBytes: MAX_READ_BYTES_PER_OPERATION });
  // A new operation has a budget of its own.
  const again = await server.gql(BRANCH_FILE, { b: branchId, p: "nine" }, viewer);
  expect(again.data?.branch.file.size).toBe(9 * 1024 * 1024);
});

test("a file room on the sparse file is closed 4413 with its size, without reading it", async () => {
  Bun.gc(true);
  const before = rss();
  const room = connectRoom(server.url, `branches/${branchId}/files/big`, owner);
  rooms.push(room);
  const closed = await room.closed;
  expect(closed.code).toBe(4413);
  expect(closed.reason).toContain(String(SPARSE));
  expect(rss() - before).toBeLessThan(MAX_RSS_GROWTH);
});

test("a file growing while it is read is cut off at the limit + 1 byte and refused", async () => {
  const dir = await fs.mkdtemp(join(server.dataDir, "grow-"));
  const path = join(dir, "f");
  await fs.writeFile(path, Buffer.alloc(4096, 1));
  const file = await fs.open(path, "r");
  try {
    // fstat says 10 bytes (the file was that small when looked at); 4,096 are there by the read.
    const stale = Object.assign(Object.create(file), { stat: async () => ({ size: 10 }) }) as typeof file;
    const read = (max: number) => readAtMost(stale, "f", max);
    await expect(read(100)).rejects.toBeInstanceOf(FileTooLargeError);
    await expect(read(100)).rejects.toMatchObject({ code: "TOO_LARGE", size: 101, maxBytes: 100 });
    expect((await read(4096)).byteLength).toBe(4096);
    // Refused from the size alone: the read never starts.
    const never = Object.assign(Object.create(file), {
      stat: async () => ({ size: 1e12 }),
      read: () => {
        throw new Error("read after a refusing size");
      },
    }) as typeof file;
    await expect(readAtMost(never, "f", 100)).rejects.toMatchObject({ size: 1e12 });
  } finally {
    await file.close();
  }
});

test("page sizes are checked", async () => {
  const res = await server.gql(
    `query($b: ID!, $n: Int) { branch(id: $b) { fileEntries(first: $n) { nodes { path } } } }`,
    { b: branchId, n: FILE_PAGE.max + 1 },
    viewer,
  );
  expect(res.errors?.[0]?.extensions).toMatchObject({ code: "BAD_USER_INPUT", field: "first" });
});
