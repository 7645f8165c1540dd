// The Relay contract against the real server: Global Object Identification (node/nodes for every type
// with an id, access exactly as the typed fields: the owner gets the object, a stranger NOT_FOUND and
// null), and cursor connections paged forwards and backwards, agreeing with the whole list, with
// typed errors for what a client gets wrong.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { getNamedType, isNonNullType, isObjectType } from "graphql";
import { NODE_TYPES } from "../../schema/global-id.ts";
import { schema } from "../../schema/index.ts";
import { codeOf, startTestServer, type TestServer } from "../utils/server.ts";
import {
  type Accounts,
  explorationFixture,
  gqlOk,
  type SessionFixture,
  sessionFixture,
  signUpAccounts,
  waitForRun,
} from "../utils/session-fixture.ts";

let server: TestServer;
let people: Accounts;
let f: SessionFixture;
/** One id of each Node type, the owner's (or in the owner's session). */
let ids: Record<string, string>;

beforeAll(async () => {
  server = await startTestServer();
  people = await signUpAccounts(server);
  f = await sessionFixture(server, people);
  const owner = people.owner.token;
  const link = (
    await gqlOk(server, owner, "mutation($s: ID!) { createShareLink(sessionId: $s, role: VIEWER) { id } }", {
      s: f.sessionId,
    })
  ).createShareLink;
  const key = (await gqlOk(server, owner, `mutation { createApiKey(name: "relay") { apiKey { id } } }`))
    .createApiKey.apiKey;
  ids = {
    Session: f.sessionId,
    Branch: f.branchId,
    Snapshot: f.snapshotId,
    Run: f.runId,
    Exploration: await explorationFixture(server, f, people.owner.userId),
    User: people.owner.userId,
    ApiKey: key.id,
    SessionShareLink: link.id,
  };
});
afterAll(() => server.close());

const NODE = "query($id: ID!) { node(id: $id) { __typename id } }";
const NODES = "query($ids: [ID!]!) { nodes(ids: $ids) { __typename id } }";

describe("Global Object Identification", () => {
  test("every type with an id of this API implements Node, and node ids are the public ids", () => {
    const node = schema.getType("Node");
    const implementing = schema
      .getPossibleTypes(node as never)
      .map((t) => t.name)
      .sort();
    expect(implementing).toEqual(Object.values(NODE_TYPES).sort());
    // Every other object with an `id: ID!` is a value that repeats a node's id (the new share link's
    // one-time payload is the SessionShareLink node) or an id of opencode's own.
    const others = Object.values(schema.getTypeMap())
      .filter((t) => isObjectType(t) && !t.name.startsWith("__") && !implementing.includes(t.name))
      .filter((t) => {
        const id = isObjectType(t) ? t.getFields().id : undefined;
        return id && isNonNullType(id.type) && getNamedType(id.type).name === "ID";
      })
      .map((t) => t.name);
    expect(others).toEqual(["ShareLink"]);
  });

  test("the owner gets every type by node(id:), the same object as its typed field", async () => {
    for (const [type, id] of Object.entries(ids)) {
      const data = await gqlOk(server, people.owner.token, NODE, { id });
      expect(data.node).toEqual({ __typename: type, id });
    }
    const typed = await gqlOk(
      server,
      people.owner.token,
      "query($id: ID!) { session(id: $id) { id title } node(id: $id) { ... on Session { id title } } }",
      { id: f.sessionId },
    );
    expect(typed.node).toEqual(typed.session);
  });

  test("a stranger gets null and NOT_FOUND for every type, as a missing id does", async () => {
    for (const id of Object.values(ids)) {
      const res = await server.gql(NODE, { id }, people.stranger.token);
      expect(res.data?.node).toBeNull();
      expect(codeOf(res)).toBe("NOT_FOUND");
    }
    const missing = await server.gql(NODE, { id: `ses_${"0".repeat(26)}` }, people.owner.token);
    expect(missing.data?.node).toBeNull();
    expect(codeOf(missing)).toBe("NOT_FOUND");
  });

  test("members see what their role shows: the session's objects and its people, not the owner's keys or links", async () => {
    const viewer = people.viewer.token;
    for (const type of ["Session", "Branch", "Snapshot", "Run", "Exploration", "User"]) {
      expect((await gqlOk(server, viewer, NODE, { id: ids[type] })).node.__typename).toBe(type);
    }
    expect(codeOf(await server.gql(NODE, { id: ids.ApiKey }, viewer))).toBe("NOT_FOUND");
    // Session.shareLinks is for owners: a member below gets FORBIDDEN there and here.
    expect(codeOf(await server.gql(NODE, { id: ids.SessionShareLink }, viewer))).toBe("FORBIDDEN");
    const listed = await server.gql(
      "query($s: ID!) { session(id: $s) { shareLinks { id } } }",
      { s: f.sessionId },
      viewer,
    );
    expect(codeOf(listed)).toBe("FORBIDDEN");
    // A user who shares no session with the viewer is not visible.
    expect(codeOf(await server.gql(NODE, { id: people.owner.userId }, people.stranger.token))).toBe(
      "NOT_FOUND",
    );
  });

  test("a new share link points at its node (one type per id), and an owner's read-only key lists links", async () => {
    const owner = people.owner.token;
    const created = (
      await gqlOk(
        server,
        owner,
        "mutation($s: ID!) { createShareLink(sessionId: $s, role: VIEWER) { token link { __typename id role } } }",
        { s: f.sessionId },
      )
    ).createShareLink;
    expect(created.link.__typename).toBe("SessionShareLink");
    expect((await gqlOk(server, owner, NODE, { id: created.link.id })).node.__typename).toBe(
      "SessionShareLink",
    );
    const readOnly = (
      await gqlOk(server, owner, `mutation { createApiKey(name: "reader", scopes: ["read"]) { secret } }`)
    ).createApiKey.secret;
    const listed = await gqlOk(server, readOnly, "query($s: ID!) { session(id: $s) { shareLinks { id } } }", {
      s: f.sessionId,
    });
    expect(listed.session.shareLinks.map((l: { id: string }) => l.id)).toContain(created.link.id);
    // Reading is all a read-only key may do with them.
    const revoke = await server.gql(
      "mutation($id: ID!) { revokeShareLink(id: $id) { id } }",
      { id: created.link.id },
      readOnly,
    );
    expect(codeOf(revoke)).toBe("FORBIDDEN");
  });

  test("anonymous callers are UNAUTHENTICATED, as on the typed fields", async () => {
    for (const id of Object.values(ids)) {
      const res = await server.gql(NODE, { id });
      expect(res.data?.node).toBeNull();
      expect(codeOf(res)).toBe("UNAUTHENTICATED");
    }
  });

  test("nodes(ids:) answers in order; what the viewer may not see is null with NOT_FOUND at its position", async () => {
    const all = Object.values(ids);
    const owner = await gqlOk(server, people.owner.token, NODES, { ids: all });
    expect(owner.nodes.map((n: { id: string }) => n.id)).toEqual(all);

    const mixed = [f.sessionId, ids.ApiKey!, f.runId];
    const res = await server.gql(NODES, { ids: mixed }, people.viewer.token);
    expect(res.data?.nodes.map((n: { id: string } | null) => n?.id ?? null)).toEqual([
      f.sessionId,
      null,
      f.runId,
    ]);
    expect(res.errors?.map((e) => [e.path, e.extensions?.code])).toEqual([[["nodes", 1], "NOT_FOUND"]]);

    const stranger = await server.gql(NODES, { ids: all }, people.stranger.token);
    expect(stranger.data?.nodes).toEqual(all.map(() => null));
    expect(stranger.errors?.every((e) => e.extensions?.code === "NOT_FOUND")).toBe(true);
  });

  test("nodes over many objects is batched: as many statements for 12 ids as for 2", async () => {
    const owner = people.owner.token;
    const sessions: string[] = [];
    for (let i = 0; i < 12; i++) {
      sessions.push(
        (await gqlOk(server, owner, `mutation { createSession(input: { title: "n${i}" }) { id } }`))
          .createSession.id,
      );
    }
    const statements = async (list: string[]) => {
      const before = server.queries.length;
      await gqlOk(server, owner, "query($ids: [ID!]!) { nodes(ids: $ids) { id ... on Session { title } } }", {
        ids: list,
      });
      return server.queries.length - before;
    };
    const few = await statements(sessions.slice(0, 2));
    expect(await statements(sessions)).toBe(few);
    expect(few).toBeLessThanOrEqual(3);
  });

  test("ids that are not ids of this API, and too many ids, are BAD_USER_INPUT", async () => {
    for (const id of ["garbage", "", "U2Vzc2lvbjox", `xyz_${"0".repeat(26)}`, `ses_${"0".repeat(25)}`]) {
      expect(codeOf(await server.gql(NODE, { id }, people.owner.token))).toBe("BAD_USER_INPUT");
    }
    const many = Array.from({ length: 101 }, () => f.sessionId);
    expect(codeOf(await server.gql(NODES, { ids: many }, people.owner.token))).toBe("BAD_USER_INPUT");
  });
});

// ---- Connections. ----

interface Page {
  edges: { cursor: string; node: { id: string } }[];
  nodes: { id: string }[];
  pageInfo: {
    hasNextPage: boolean;
    hasPreviousPage: boolean;
    startCursor: string | null;
    endCursor: string | null;
  };
}
const PAGE =
  "edges { cursor node { id } } nodes { id } pageInfo { hasNextPage hasPreviousPage startCursor endCursor }";

/** Pages through a whole connection, forwards (first/after) or backwards (last/before). */
async function walk(read: (args: Record<string, unknown>) => Promise<Page>, size: number, backward: boolean) {
  const seen: string[] = [];
  let cursor: string | null = null;
  for (let i = 0; i < 50; i++) {
    const page = await read(backward ? { last: size, before: cursor } : { first: size, after: cursor });
    // The page agrees with itself: nodes are the edges' nodes, start/end cursors are the edges' ends.
    expect(page.nodes).toEqual(page.edges.map((e) => e.node));
    expect(page.pageInfo.startCursor).toBe(page.edges[0]?.cursor ?? null);
    expect(page.pageInfo.endCursor).toBe(page.edges.at(-1)?.cursor ?? null);
    // Pages after the first say there is more on the side we came from.
    if (i > 0) expect(backward ? page.pageInfo.hasNextPage : page.pageInfo.hasPreviousPage).toBe(true);
    const ids = page.edges.map((e) => e.node.id);
    if (backward) seen.unshift(...ids);
    else seen.push(...ids);
    const more = backward ? page.pageInfo.hasPreviousPage : page.pageInfo.hasNextPage;
    if (!more) {
      expect(backward ? page.pageInfo.hasNextPage : page.pageInfo.hasPreviousPage).toBe(i > 0);
      return seen;
    }
    cursor = backward ? page.pageInfo.startCursor : page.pageInfo.endCursor;
  }
  throw new Error("the connection never ended");
}

describe("connections", () => {
  let token: string;
  let sessionId: string;
  let branchId: string;
  const readSessions = async (args: Record<string, unknown>) =>
    (
      await gqlOk(
        server,
        token,
        `query($first: Int, $after: String, $last: Int, $before: String) {
        sessions(first: $first, after: $after, last: $last, before: $before) { ${PAGE} } }`,
        args,
      )
    ).sessions as Page;
  const readSnapshots = async (args: Record<string, unknown>) =>
    (
      await gqlOk(
        server,
        token,
        `query($s: ID!, $first: Int, $after: String, $last: Int, $before: String) {
        session(id: $s) { snapshots(first: $first, after: $after, last: $last, before: $before) { ${PAGE} } } }`,
        {
          s: sessionId,
          ...args,
        },
      )
    ).session.snapshots as Page;
  const readRuns = (of: "session" | "branch") => async (args: Record<string, unknown>) =>
    (
      await gqlOk(
        server,
        token,
        `query($id: ID!, $first: Int, $after: String, $last: Int, $before: String) {
        ${of}(id: $id) { runs(first: $first, after: $after, last: $last, before: $before) { ${PAGE} } } }`,
        { id: of === "session" ? sessionId : branchId, ...args },
      )
    )[of].runs as Page;
  /** fileEntries of directory "d", of the branch (its live workspace) or of its head snapshot. */
  const readFiles = (of: "branch" | "snapshot") => async (args: Record<string, unknown>) => {
    const page = (
      await gqlOk(
        server,
        token,
        `query($id: ID!, $first: Int, $after: String, $last: Int, $before: String) {
        ${of}(id: $id) { fileEntries(path: "d", first: $first, after: $after, last: $last, before: $before) {
          edges { cursor node { path } } nodes { path } pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } } }`,
        { id: of === "branch" ? branchId : headId, ...args },
      )
    )[of].fileEntries;
    // File entries have no id: their path is what identifies them in a listing.
    const asId = (n: { path: string }) => ({ id: n.path });
    return {
      ...page,
      edges: page.edges.map((e: { cursor: string; node: { path: string } }) => ({
        ...e,
        node: asId(e.node),
      })),
      nodes: page.nodes.map(asId),
    } as Page;
  };
  let headId: string;
  const FILE_NAMES = ["a", "b", "b.1", "c", "d", "e", "é", "z"];
  const RUNS = 5;

  beforeAll(async () => {
    ({ token } = await server.signUp());
    for (let i = 0; i < 7; i++) {
      const s = (
        await gqlOk(
          server,
          token,
          `mutation { createSession(input: { title: "p${i}" }) { id mainBranch { id } } }`,
        )
      ).createSession;
      sessionId = s.id;
      branchId = s.mainBranch.id;
    }
    for (let i = 0; i < 6; i++) {
      await gqlOk(
        server,
        token,
        `mutation($b: ID!, $c: String!) { writeFile(branchId: $b, path: "f.txt", content: $c) { id } }`,
        {
          b: branchId,
          c: `v${i}`,
        },
      );
    }
    for (let i = 0; i < RUNS; i++) {
      const run = (
        await gqlOk(server, token, `mutation($b: ID!) { exec(branchId: $b, command: "true") { id } }`, {
          b: branchId,
        })
      ).exec;
      expect(await waitForRun(server, token, run.id)).toBe("SUCCEEDED");
    }
    // In shuffled order: the listing sorts by path, whatever order the directory holds them in.
    for (const name of [...FILE_NAMES].reverse()) {
      await gqlOk(
        server,
        token,
        `mutation($b: ID!, $p: String!) { writeFile(branchId: $b, path: $p, content: "x") { id } }`,
        { b: branchId, p: `d/${name}` },
      );
    }
    headId = (
      await gqlOk(server, token, "query($b: ID!) { branch(id: $b) { head { id } } }", { b: branchId })
    ).branch.head.id;
  });

  test("sessions: paging forwards and backwards by 3 agrees with the whole list (newest first)", async () => {
    const whole = (await readSessions({ first: 100 })).edges.map((e) => e.node.id);
    expect(whole).toHaveLength(7);
    expect(whole[0]).toBe(sessionId);
    expect(await walk(readSessions, 3, false)).toEqual(whole);
    expect(await walk(readSessions, 3, true)).toEqual(whole);
    expect(await walk(readSessions, 7, true)).toEqual(whole);
    const end = await readSessions({ last: 2 });
    expect(end.edges.map((e) => e.node.id)).toEqual(whole.slice(-2));
    expect(end.pageInfo).toMatchObject({ hasPreviousPage: true, hasNextPage: false });
  });

  test("snapshots: paging both ways agrees with the whole tree (oldest first); cursors bound both ends", async () => {
    const whole = (await readSnapshots({ first: 100 })).edges.map((e) => e.node.id);
    expect(whole).toHaveLength(1 + 6 + RUNS + FILE_NAMES.length); // the root, then a snapshot per write and run
    expect(await walk(readSnapshots, 2, false)).toEqual(whole);
    expect(await walk(readSnapshots, 2, true)).toEqual(whole);
    const all = await readSnapshots({ first: 100 });
    const between = await readSnapshots({
      first: 100,
      after: all.edges[1]!.cursor,
      before: all.edges[5]!.cursor,
    });
    expect(between.edges.map((e) => e.node.id)).toEqual(whole.slice(2, 5));
    expect(between.pageInfo.hasPreviousPage).toBe(true);
  });

  test("first: 0 returns only pageInfo", async () => {
    const page = await readSessions({ first: 0 });
    expect(page.edges).toEqual([]);
    expect(page.pageInfo).toMatchObject({ hasNextPage: true, startCursor: null, endCursor: null });
  });

  test("bad page arguments are typed BAD_USER_INPUT naming the argument", async () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ first: 2, last: 2 }, "last"],
      [{ first: -1 }, "first"],
      [{ first: 101 }, "first"],
      [{ last: 1000 }, "last"],
      [{ after: "not-a-cursor" }, "after"],
      [{ before: "bm90OmEtY3Vyc29y" }, "before"], // base64url of "not:a-cursor"
      [{ after: "x".repeat(5000) }, "after"],
    ];
    for (const [args, arg] of cases) {
      const res = await server.gql(
        "query($first: Int, $after: String, $last: Int, $before: String) { sessions(first: $first, after: $after, last: $last, before: $before) { edges { cursor } } }",
        args,
        token,
      );
      expect([codeOf(res), res.errors?.[0]?.extensions?.field]).toEqual(["BAD_USER_INPUT", arg]);
    }
  });

  test("runs, of a session and of a branch: paging both ways agrees with the whole list (newest first)", async () => {
    for (const read of [readRuns("session"), readRuns("branch")]) {
      const all = await read({ first: 100 });
      const whole = all.edges.map((e) => e.node.id);
      expect(whole).toHaveLength(RUNS);
      expect(all.pageInfo).toMatchObject({ hasNextPage: false, hasPreviousPage: false });
      expect(await walk(read, 2, false)).toEqual(whole);
      expect(await walk(read, 2, true)).toEqual(whole);
      expect(await walk(read, RUNS, true)).toEqual(whole);
      const end = await read({ last: 2 });
      expect(end.edges.map((e) => e.node.id)).toEqual(whole.slice(-2));
      expect(end.pageInfo).toMatchObject({ hasPreviousPage: true, hasNextPage: false });
      // Between two cursors, read from the `before` end: all of it fits, and a run lies past `before`.
      const between = await read({ last: 100, after: all.edges[0]!.cursor, before: all.edges[3]!.cursor });
      expect(between.edges.map((e) => e.node.id)).toEqual(whole.slice(1, 3));
      expect(between.pageInfo).toMatchObject({ hasPreviousPage: false, hasNextPage: true });
    }
  });

  test("fileEntries, live and of a snapshot: paging both ways agrees with the whole listing (by path)", async () => {
    const paths = FILE_NAMES.map((name) => `d/${name}`).sort();
    for (const read of [readFiles("branch"), readFiles("snapshot")]) {
      const all = await read({ first: 1000 });
      expect(all.edges.map((e) => e.node.id)).toEqual(paths);
      expect(all.pageInfo).toMatchObject({ hasNextPage: false, hasPreviousPage: false });
      for (const size of [2, 3, 8]) {
        expect(await walk(read, size, false)).toEqual(paths);
        expect(await walk(read, size, true)).toEqual(paths);
      }
      const end = await read({ last: 3 });
      expect(end.edges.map((e) => e.node.id)).toEqual(paths.slice(-3));
      expect(end.pageInfo).toMatchObject({ hasPreviousPage: true, hasNextPage: false });
      // Both cursors bound the page; reading from either end of what lies between.
      const [after, before] = [all.edges[1]!.cursor, all.edges[6]!.cursor];
      const fromStart = await read({ first: 3, after, before });
      expect(fromStart.edges.map((e) => e.node.id)).toEqual(paths.slice(2, 5));
      expect(fromStart.pageInfo).toMatchObject({ hasPreviousPage: true, hasNextPage: true });
      const fromEnd = await read({ last: 3, after, before });
      expect(fromEnd.edges.map((e) => e.node.id)).toEqual(paths.slice(3, 6));
      expect(fromEnd.pageInfo).toMatchObject({ hasPreviousPage: true, hasNextPage: true });
      // Past the ends: nothing, and no page that way.
      const past = await read({ last: 2, before: all.edges[0]!.cursor });
      expect(past.edges).toEqual([]);
      expect(past.pageInfo).toMatchObject({ hasPreviousPage: false, hasNextPage: true });
    }
  });

  test("bad fileEntries page arguments are typed BAD_USER_INPUT naming the argument", async () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ first: 2, last: 2 }, "last"],
      [{ last: 0 }, "last"],
      [{ last: 1001 }, "last"],
      [{ before: "not-a-cursor" }, "before"],
      [{ last: 2, before: Buffer.from("nope").toString("base64url") }, "before"],
    ];
    for (const [args, arg] of cases) {
      const res = await server.gql(
        `query($b: ID!, $first: Int, $after: String, $last: Int, $before: String) {
          branch(id: $b) { fileEntries(path: "d", first: $first, after: $after, last: $last, before: $before) { edges { cursor } } } }`,
        { b: branchId, ...args },
        token,
      );
      expect([codeOf(res), res.errors?.[0]?.extensions?.field]).toEqual(["BAD_USER_INPUT", arg]);
    }
  });
});
