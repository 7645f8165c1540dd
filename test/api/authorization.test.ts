// Every session-scoped query, mutation and subscription, as owner, editor, viewer, a stranger and
// anonymous: allowed at or above the operation's role; below it, members get FORBIDDEN, strangers
// NOT_FOUND (exactly as for a missing id: existence is never revealed), anonymous UNAUTHENTICATED.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { startTestServer, type TestServer } from "../utils/server.ts";
import { collect, wsClient } from "../utils/ws.ts";

type Actor = "owner" | "editor" | "viewer" | "stranger" | "anonymous";
type Need = "VIEWER" | "EDITOR" | "OWNER";
const ACTORS: Actor[] = ["owner", "editor", "viewer", "stranger", "anonymous"];
const RANK = { VIEWER: 1, EDITOR: 2, OWNER: 3 } as const;

let server: TestServer;
const tokens: Partial<Record<Actor, string>> = {};
const emails: Partial<Record<Actor, string>> = {};
const userIds: Partial<Record<Actor, string>> = {};

interface Fixture {
  sessionId: string;
  branchId: string;
  otherBranchId: string;
  snapshotId: string;
  runId: string;
}

async function as(actor: Actor, query: string, variables: Record<string, unknown> = {}) {
  return server.gql(query, variables, tokens[actor]);
}

async function ok(query: string, variables: Record<string, unknown> = {}) {
  const res = await as("owner", query, variables);
  if (res.errors) throw new Error(JSON.stringify(res.errors));
  return res.data!;
}

/** A fresh session shared with the editor and the viewer, with a branch, a snapshot and a finished run. */
async function fixture(): Promise<Fixture> {
  const s = (
    await ok(`mutation { createSession(input: { title: "authz" }) { id mainBranch { id head { id } } } }`)
  ).createSession;
  for (const [actor, role] of [
    ["editor", "EDITOR"],
    ["viewer", "VIEWER"],
  ] as const) {
    await ok(
      `mutation($s: ID!, $e: String!, $r: Role!) { shareSession(sessionId: $s, email: $e, role: $r) { role } }`,
      {
        s: s.id,
        e: emails[actor],
        r: role,
      },
    );
  }
  const run = (
    await ok(`mutation($b: ID!) { exec(branchId: $b, command: "echo hi > f.txt") { id } }`, {
      b: s.mainBranch.id,
    })
  ).exec;
  for (let i = 0; i < 200; i++) {
    const status = (await ok(`query($r: ID!) { run(id: $r) { status } }`, { r: run.id })).run.status;
    if (status !== "QUEUED" && status !== "RUNNING") break;
    await Bun.sleep(20);
  }
  const other = (
    await ok(`mutation($s: ID!) { fork(snapshotId: $s, name: "other") { id } }`, { s: s.mainBranch.head.id })
  ).fork;
  return {
    sessionId: s.id,
    branchId: s.mainBranch.id,
    otherBranchId: other.id,
    snapshotId: s.mainBranch.head.id,
    runId: run.id,
  };
}

interface Operation {
  name: string;
  need: Need;
  query: string;
  vars: (f: Fixture) => Record<string, unknown> | Promise<Record<string, unknown>>;
}

const OPERATIONS: Operation[] = [
  {
    name: "query session",
    need: "VIEWER",
    query: "query($s: ID!) { session(id: $s) { id title members { role } } }",
    vars: (f) => ({ s: f.sessionId }),
  },
  {
    name: "query branch (+files)",
    need: "VIEWER",
    query: `query($b: ID!) { branch(id: $b) { id files { path } file(path: "f.txt") { content } } }`,
    vars: (f) => ({ b: f.branchId }),
  },
  {
    name: "query snapshot (+files)",
    need: "VIEWER",
    query: "query($s: ID!) { snapshot(id: $s) { id files { path } } }",
    vars: (f) => ({ s: f.snapshotId }),
  },
  {
    name: "query run",
    need: "VIEWER",
    query: "query($r: ID!) { run(id: $r) { id output } }",
    vars: (f) => ({ r: f.runId }),
  },
  {
    name: "query diff",
    need: "VIEWER",
    query: "query($a: ID!) { diff(from: $a, to: $a) { files { path } } }",
    vars: (f) => ({ a: f.snapshotId }),
  },
  {
    name: "exec",
    need: "EDITOR",
    query: `mutation($b: ID!) { exec(branchId: $b, command: "true") { id } }`,
    vars: (f) => ({ b: f.branchId }),
  },
  {
    name: "abortRun",
    need: "EDITOR",
    query: "mutation($r: ID!) { abortRun(id: $r) { id } }",
    vars: (f) => ({ r: f.runId }),
  },
  {
    name: "writeFile",
    need: "EDITOR",
    query: `mutation($b: ID!) { writeFile(branchId: $b, path: "w.txt", content: "x") { id } }`,
    vars: (f) => ({ b: f.branchId }),
  },
  {
    name: "checkpoint",
    need: "EDITOR",
    query: "mutation($b: ID!) { checkpoint(branchId: $b) { id } }",
    vars: (f) => ({ b: f.branchId }),
  },
  {
    name: "fork",
    need: "EDITOR",
    query: "mutation($s: ID!) { fork(snapshotId: $s) { id } }",
    vars: (f) => ({ s: f.snapshotId }),
  },
  {
    name: "rollback",
    need: "EDITOR",
    query: "mutation($b: ID!, $s: ID!) { rollback(branchId: $b, snapshotId: $s) { id } }",
    vars: (f) => ({ b: f.branchId, s: f.snapshotId }),
  },
  {
    name: "deleteBranch",
    need: "EDITOR",
    query: "mutation($b: ID!) { deleteBranch(id: $b) }",
    vars: (f) => ({ b: f.otherBranchId }),
  },
  {
    name: "promote",
    need: "OWNER",
    query: "mutation($b: ID!) { promote(branchId: $b) { id } }",
    vars: (f) => ({ b: f.otherBranchId }),
  },
  {
    name: "shareSession",
    need: "OWNER",
    query: `mutation($s: ID!, $e: String!) { shareSession(sessionId: $s, email: $e, role: VIEWER) { role } }`,
    vars: (f) => ({ s: f.sessionId, e: emails.stranger }),
  },
  {
    name: "createShareLink",
    need: "OWNER",
    query: "mutation($s: ID!) { createShareLink(sessionId: $s, role: VIEWER) { token } }",
    vars: (f) => ({ s: f.sessionId }),
  },
  {
    name: "removeMember",
    need: "OWNER",
    query: "mutation($s: ID!, $u: ID!) { removeMember(sessionId: $s, userId: $u) }",
    vars: (f) => ({ s: f.sessionId, u: userIds.viewer }),
  },
  {
    name: "deleteSession",
    need: "OWNER",
    query: "mutation($s: ID!) { deleteSession(id: $s) }",
    vars: (f) => ({ s: f.sessionId }),
  },
];

function expected(actor: Actor, need: Need): "allowed" | string {
  if (actor === "anonymous") return "UNAUTHENTICATED";
  if (actor === "stranger") return "NOT_FOUND";
  return RANK[actor.toUpperCase() as Need] >= RANK[need] ? "allowed" : "FORBIDDEN";
}

beforeAll(async () => {
  server = await startTestServer();
  for (const actor of ACTORS) {
    if (actor === "anonymous") continue;
    const user = await server.signUp(`${actor}-${crypto.randomUUID().slice(0, 6)}@example.com`);
    tokens[actor] = user.token;
    emails[actor] = user.email;
    userIds[actor] = user.userId;
  }
});
afterAll(() => server.close());

describe("queries and mutations", () => {
  for (const op of OPERATIONS) {
    test(`${op.name} (needs ${op.need})`, async () => {
      const outcomes: Record<string, string> = {};
      const wanted: Record<string, string> = {};
      for (const actor of ACTORS) {
        const f = await fixture();
        const res = await as(actor, op.query, await op.vars(f));
        outcomes[actor] = res.errors ? String(res.errors[0]!.extensions!.code) : "allowed";
        wanted[actor] = expected(actor, op.need);
      }
      expect(outcomes).toEqual(wanted);
    });
  }

  test("a stranger's NOT_FOUND is word for word a missing id's", async () => {
    const f = await fixture();
    const foreign = await as("stranger", "query($b: ID!) { branch(id: $b) { id } }", { b: f.branchId });
    const missing = await as("stranger", "query($b: ID!) { branch(id: $b) { id } }", {
      b: "br_000000000000000000000000zz",
    });
    expect(foreign.errors![0]!.message).toBe(missing.errors![0]!.message);
    // (The shareSession case above made "stranger" a member somewhere, so list as a brand-new user.)
    const fresh = await server.signUp();
    const list = await server.gql("{ sessions { edges { node { id } } } }", {}, fresh.token);
    expect(list.data!.sessions.edges).toEqual([]);
    expect(
      (await as("anonymous", "{ sessions { edges { node { id } } } }")).errors![0]!.extensions!.code,
    ).toBe("UNAUTHENTICATED");
  });

  test("joinSession with a share link grants its role; a forged or expired link is refused", async () => {
    const f = await fixture();
    const link = (
      await ok(
        `mutation($s: ID!) { createShareLink(sessionId: $s, role: EDITOR, expiresInSeconds: 600) { token url role } }`,
        { s: f.sessionId },
      )
    ).createShareLink;
    expect(link.url).toContain("joinSession");
    expect(
      (await as("anonymous", "mutation($t: String!) { joinSession(token: $t) { id } }", { t: link.token }))
        .errors![0]!.extensions!.code,
    ).toBe("UNAUTHENTICATED");
    const joined = await as(
      "stranger",
      "mutation($t: String!) { joinSession(token: $t) { id viewerRole } }",
      { t: link.token },
    );
    expect(joined.data!.joinSession.viewerRole).toBe("EDITOR");
    // Now an editor: exec is allowed, promote is not.
    expect(
      (
        await as("stranger", `mutation($b: ID!) { exec(branchId: $b, command: "true") { id } }`, {
          b: f.branchId,
        })
      ).errors,
    ).toBeUndefined();
    expect(
      (await as("stranger", "mutation($b: ID!) { promote(branchId: $b) { id } }", { b: f.branchId }))
        .errors![0]!.extensions!.code,
    ).toBe("FORBIDDEN");
    // A link cannot lower the role of someone who has more.
    await as("owner", "mutation($t: String!) { joinSession(token: $t) { id } }", { t: link.token });
    expect(
      (await ok("query($s: ID!) { session(id: $s) { viewerRole } }", { s: f.sessionId })).session.viewerRole,
    ).toBe("OWNER");
    // Tampered tokens are refused.
    const forged = `${link.token.slice(0, -3)}abc`;
    expect(
      (await as("viewer", "mutation($t: String!) { joinSession(token: $t) { id } }", { t: forged }))
        .errors![0]!.extensions!.code,
    ).toBe("BAD_USER_INPUT");
    // An access token is not a share link (different audience).
    expect(
      (await as("viewer", "mutation($t: String!) { joinSession(token: $t) { id } }", { t: tokens.owner }))
        .errors![0]!.extensions!.code,
    ).toBe("BAD_USER_INPUT");
  });
});

describe("subscriptions", () => {
  const SUBSCRIPTIONS: {
    name: string;
    query: string;
    vars: (f: Fixture) => Record<string, unknown>;
    trigger?: (f: Fixture) => Promise<unknown>;
  }[] = [
    {
      name: "runOutput",
      query: "subscription($r: ID!) { runOutput(runId: $r) { __typename } }",
      vars: (f) => ({ r: f.runId }),
    },
    {
      name: "sessionEvents",
      query: "subscription($s: ID!) { sessionEvents(sessionId: $s) { kind } }",
      vars: (f) => ({ s: f.sessionId }),
      trigger: (f) => ok("mutation($b: ID!) { checkpoint(branchId: $b) { id } }", { b: f.branchId }),
    },
  ];
  for (const sub of SUBSCRIPTIONS) {
    test(`${sub.name} (needs VIEWER)`, async () => {
      const outcomes: Record<string, string> = {};
      const wanted: Record<string, string> = {};
      for (const actor of ACTORS) {
        const f = await fixture();
        const client = wsClient(server.wsUrl, tokens[actor]);
        const c = collect(client, sub.query, sub.vars(f));
        await Bun.sleep(100);
        await sub.trigger?.(f);
        const first = await Promise.race([
          c
            .until(() => true, 5000)
            .then((r: any) => (r.errors ? String(r.errors[0].extensions.code) : "allowed")),
          c.completed.then(() =>
            c.errors[0] ? String((c.errors[0] as any)[0]?.extensions?.code) : "completed",
          ),
        ]).catch((e) => `timeout ${e}`);
        outcomes[actor] = first;
        wanted[actor] = expected(actor, "VIEWER");
        c.dispose();
        await client.dispose();
      }
      expect(outcomes).toEqual(wanted);
    });
  }
});
