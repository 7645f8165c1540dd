// The authorization matrix, generated from the schema: every root field (Mutation, Query,
// Subscription) is run as anonymous, a stranger, a viewer, an editor, the owner, a read-only API key of
// the owner and a revoked key of the owner, with arguments built from a fixture session by argument
// name and type. What each must get comes from POLICY below, keyed by field name; a field missing from
// POLICY fails ("not covered by the authorization policy"), so a new operation has to be classified.
//
// Outcomes: below the role, members get FORBIDDEN and strangers NOT_FOUND (never data); read-only keys
// get FORBIDDEN for every write; anonymous callers UNAUTHENTICATED; a revoked key UNAUTHENTICATED
// everywhere. At the role: no auth error (UNAVAILABLE for agent work without a model is fine).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import {
  type GraphQLArgument,
  type GraphQLField,
  type GraphQLInputType,
  getNamedType,
  isEnumType,
  isInputObjectType,
  isLeafType,
  isListType,
  isNonNullType,
} from "graphql";
import { schema } from "../../schema/index.ts";
import { startTestServer, type TestServer } from "../utils/server.ts";
import {
  type Account,
  type Accounts,
  explorationFixture,
  gqlOk,
  type SessionFixture,
  sessionFixture,
  signUpAccounts,
} from "../utils/session-fixture.ts";
import { collect, wsClient } from "../utils/ws.ts";

/**
 * PUBLIC: anyone (credentials are not needed). USER: any signed-in user, on their own account.
 * SELF: an object of the owner's account (everyone else: NOT_FOUND). VIEWER/EDITOR/OWNER: a role in
 * the fixture session.
 */
type Need = "PUBLIC" | "USER" | "SELF" | "VIEWER" | "EDITOR" | "OWNER";
interface Rule {
  need: Need;
  /** Arguments merged over the generated ones (a variant that changes the required role), or built from the fixture. */
  args?: Record<string, unknown> | ((w: World) => Record<string, unknown>);
  /** Each allowed actor gets a fresh fixture (the operation consumes what it acts on). */
  fresh?: boolean;
}
type Root = "Query" | "Mutation" | "Subscription";

/** Keys are field names; "field(arg: value)" is a variant of the field with its own row. */
const POLICY: Record<Root, Record<string, Need | Rule>> = {
  Mutation: {
    register: "PUBLIC",
    login: "PUBLIC",
    createApiKey: "USER",
    revokeApiKey: "SELF",
    setModelKey: "USER",
    deleteModelKey: "USER",
    createSession: "USER",
    joinSession: "USER",
    deleteSession: "OWNER",
    shareSession: "OWNER",
    "shareSession(role: OWNER)": { need: "OWNER", args: { role: "OWNER" } },
    removeMember: "OWNER",
    createShareLink: "OWNER",
    "createShareLink(role: EDITOR)": { need: "OWNER", args: { role: "EDITOR" } },
    revokeShareLink: "OWNER",
    // Signs the actor's tokens out: CLEANUP signs everyone in again.
    signOutEverywhere: "USER",
    promote: "OWNER",
    fork: "EDITOR",
    rollback: "EDITOR",
    checkpoint: "EDITOR",
    writeFile: "EDITOR",
    deleteBranch: { need: "EDITOR", fresh: true },
    exec: "EDITOR",
    abortRun: "EDITOR",
    prompt: "EDITOR",
    // Whether the session's agent asks before it acts: the owner's choice; answering an ask is editing.
    setAgentPermissions: "OWNER",
    answerPermission: "EDITOR",
    explore: "EDITOR",
    "explore(promote: false)": { need: "EDITOR", args: { input: { promote: false } } },
    // Exploring may move the main branch when asked to: that is promote's power, owners only.
    "explore(promote: true)": { need: "OWNER", args: { input: { promote: true } } },
    // Presence is written (others see it), so a read-only key may not announce.
    announcePresence: "VIEWER",
  },
  Query: {
    health: "PUBLIC",
    me: "PUBLIC",
    sessions: "USER",
    session: "VIEWER",
    branch: "VIEWER",
    snapshot: "VIEWER",
    run: "VIEWER",
    diff: "VIEWER",
    exploration: "VIEWER",
    // Global Object Identification: each type exactly as its typed field (a session's by default).
    node: "VIEWER",
    "node(id: Branch)": { need: "VIEWER", args: (w) => ({ id: w.f.branchId }) },
    "node(id: Snapshot)": { need: "VIEWER", args: (w) => ({ id: w.f.snapshotId }) },
    "node(id: Run)": { need: "VIEWER", args: (w) => ({ id: w.f.runId }) },
    "node(id: Exploration)": { need: "VIEWER", args: (w) => ({ id: w.explorationId }) },
    // A user is visible to the members of the sessions they are in.
    "node(id: User)": { need: "VIEWER", args: () => ({ id: people.owner.userId }) },
    "node(id: ApiKey)": { need: "SELF", args: (w) => ({ id: w.apiKeyId }) },
    "node(id: SessionShareLink)": { need: "OWNER", args: (w) => ({ id: w.shareLinkId }) },
    nodes: "VIEWER",
    "nodes(ids: [Run, Exploration])": {
      need: "VIEWER",
      args: (w) => ({ ids: [w.f.runId, w.explorationId] }),
    },
  },
  Subscription: {
    accountEvents: "USER",
    sessionEvents: "VIEWER",
    runOutput: "VIEWER",
    agentEvents: "VIEWER",
    exploration: "VIEWER",
    presence: "VIEWER",
  },
};

type Actor = "anonymous" | "revoked" | "readonly" | "stranger" | "viewer" | "editor" | "owner";
/** Least privileged first: refused actors share a fixture, so a hole shows before anything is consumed. */
const ACTORS: Actor[] = ["anonymous", "revoked", "readonly", "stranger", "viewer", "editor", "owner"];
const RANK = { VIEWER: 1, EDITOR: 2, OWNER: 3 } as const;
const AUTH_CODES = new Set(["UNAUTHENTICATED", "FORBIDDEN", "NOT_FOUND"]);

function expected(actor: Actor, need: Need, root: Root): string {
  if (actor === "revoked") return "UNAUTHENTICATED";
  if (need === "PUBLIC") return "allowed";
  if (actor === "anonymous") return "UNAUTHENTICATED";
  if (actor === "readonly" && root === "Mutation") return "FORBIDDEN";
  const who = actor === "readonly" ? "owner" : actor;
  if (need === "USER") return "allowed";
  if (need === "SELF") return who === "owner" ? "allowed" : "NOT_FOUND";
  if (who === "stranger") return "NOT_FOUND";
  return RANK[who.toUpperCase() as keyof typeof RANK] >= RANK[need] ? "allowed" : "FORBIDDEN";
}

let server: TestServer;
let people: Accounts;
let bystander: Account;
const credentials: Partial<Record<Actor, string>> = {};

/** What arguments are built from: the fixture session and a few objects around it. */
interface World {
  f: SessionFixture;
  shareToken: string;
  shareLinkId: string;
  apiKeyId: string;
  explorationId: string;
}

let lastWorldKey: string | null = null;
async function makeWorld(): Promise<World> {
  const f = await sessionFixture(server, people);
  const owner = people.owner.token;
  const { token: shareToken, id: shareLinkId } = (
    await gqlOk(
      server,
      owner,
      "mutation($s: ID!) { createShareLink(sessionId: $s, role: EDITOR) { id token } }",
      {
        s: f.sessionId,
      },
    )
  ).createShareLink;
  // An account keeps at most 50 active keys, fewer than the rows: the last world's key goes first.
  if (lastWorldKey)
    await server.gql("mutation($id: ID!) { revokeApiKey(id: $id) { id } }", { id: lastWorldKey }, owner);
  const apiKeyId = (
    await gqlOk(server, owner, `mutation { createApiKey(name: "to-revoke") { apiKey { id } } }`)
  ).createApiKey.apiKey.id;
  lastWorldKey = apiKeyId;
  const explorationId = await explorationFixture(server, f, people.owner.userId);
  return { f, shareToken, shareLinkId, apiKeyId, explorationId };
}

// ---- Arguments from the schema: ids by argument name (or the field's type), the rest by type. ----

type Pick_ = (w: World) => string;
/** Ids by "field.arg" where the name alone is ambiguous. */
const ID_BY_FIELD_ARG: Record<string, Pick_> = {
  "deleteSession.id": (w) => w.f.sessionId,
  "deleteBranch.id": (w) => w.f.otherBranchId,
  "promote.branchId": (w) => w.f.otherBranchId,
  "exploration.id": (w) => w.explorationId,
  "revokeApiKey.id": (w) => w.apiKeyId,
  "revokeShareLink.id": (w) => w.shareLinkId,
  "node.id": (w) => w.f.sessionId,
  "nodes.ids": (w) => w.f.sessionId,
};
const ID_BY_ARG: Record<string, Pick_> = {
  sessionId: (w) => w.f.sessionId,
  branchId: (w) => w.f.branchId,
  snapshotId: (w) => w.f.snapshotId,
  runId: (w) => w.f.runId,
  from: (w) => w.f.snapshotId,
  to: (w) => w.f.snapshotId,
  userId: () => people.viewer.userId,
};
/** `id` by the type the field returns. */
const ID_BY_TYPE: Record<string, Pick_> = {
  Session: (w) => w.f.sessionId,
  Branch: (w) => w.f.branchId,
  Snapshot: (w) => w.f.snapshotId,
  Run: (w) => w.f.runId,
  Exploration: (w) => w.explorationId,
  ApiKey: (w) => w.apiKeyId,
};

let unique = 0;
const STRING_BY_ARG: Record<string, (w: World, field: string) => string> = {
  email: (_w, field) =>
    field === "register" ? `new-${++unique}-${crypto.randomUUID().slice(0, 6)}@example.com` : bystander.email,
  password: () => "password123",
  token: (w) => w.shareToken,
  name: () => `n${++unique}`,
  command: () => "true",
  scoreCommand: () => "true",
  text: () => "hello",
  path: () => "f.txt",
  content: () => "x",
  baseURL: () => "https://93.184.215.14/v1", // a public address (loopback is refused: SSRF policy)
  apiKey: () => "sk-test",
  model: () => "m",
};
const ENUM_BY_ARG: Record<string, string> = { role: "VIEWER" };

function valueFor(
  type: GraphQLInputType,
  name: string,
  field: GraphQLField<unknown, unknown>,
  w: World,
): unknown {
  const inner = isNonNullType(type) ? type.ofType : type;
  if (isListType(inner)) return [valueFor(inner.ofType, name, field, w)];
  if (isInputObjectType(inner)) {
    const out: Record<string, unknown> = {};
    for (const f of Object.values(inner.getFields())) {
      if (isNonNullType(f.type) && f.defaultValue === undefined)
        out[f.name] = valueFor(f.type, f.name, field, w);
    }
    return out;
  }
  if (isEnumType(inner)) return ENUM_BY_ARG[name] ?? inner.getValues()[0]!.value;
  switch (inner.name) {
    case "ID": {
      const pick =
        ID_BY_FIELD_ARG[`${field.name}.${name}`] ??
        ID_BY_ARG[name] ??
        (name === "id" ? ID_BY_TYPE[getNamedType(field.type).name] : undefined);
      if (!pick) throw new Error(`No fixture id for argument ${field.name}(${name}): add it to ID_BY_ARG`);
      return pick(w);
    }
    case "String":
      return (STRING_BY_ARG[name] ?? (() => "x"))(w, field.name);
    case "Int":
    case "Float":
      return 1;
    case "Boolean":
      return true;
    case "JSON":
      return {};
    default:
      throw new Error(`No value for ${inner.name} (argument ${field.name}(${name}))`);
  }
}

function deepMerge(base: unknown, over: unknown): unknown {
  if (typeof base !== "object" || base === null || typeof over !== "object" || over === null) return over;
  if (Array.isArray(over)) return over;
  const out: Record<string, unknown> = { ...(base as Record<string, unknown>) };
  for (const [k, v] of Object.entries(over)) out[k] = deepMerge(out[k], v);
  return out;
}

/** `mutation($a: T!) { field(a: $a) { __typename } }` with required arguments (and the rule's). */
function operation(root: Root, field: GraphQLField<unknown, unknown>, rule: Rule, w: World) {
  const given = typeof rule.args === "function" ? rule.args(w) : (rule.args ?? {});
  const used = field.args.filter((a: GraphQLArgument) => isNonNullType(a.type) || a.name in given);
  const variables: Record<string, unknown> = {};
  for (const a of used) {
    const generated = isNonNullType(a.type) ? valueFor(a.type, a.name, field, w) : undefined;
    variables[a.name] = a.name in given ? deepMerge(generated, given[a.name]) : generated;
  }
  const decl = used.length ? `(${used.map((a) => `$${a.name}: ${String(a.type)}`).join(", ")})` : "";
  const call = used.length ? `(${used.map((a) => `${a.name}: $${a.name}`).join(", ")})` : "";
  const selection = isLeafType(getNamedType(field.type)) ? "" : " { __typename }";
  return { query: `${root.toLowerCase()}${decl} { ${field.name}${call}${selection} }`, variables };
}

// ---- Running one operation as one actor. ----

function classify(errors: any[] | undefined, data: any, field: string): string {
  const error = errors?.[0];
  if (!error) return "allowed";
  const code = String(error.extensions?.code);
  if (code === "INTERNAL") return `INTERNAL: ${error.message}`;
  // nodes(ids:) refuses per position: a list of nulls is no data.
  const value = data?.[field];
  const leaked = Array.isArray(value) ? value.some((v) => v != null) : value != null;
  if (AUTH_CODES.has(code)) return leaked ? `${code} WITH DATA` : code;
  // Agent work without a configured model (or a conflicting state) is past the auth checks.
  if (code === "UNAVAILABLE" || code === "CONFLICT") return "allowed";
  return `${code}: ${error.message}`;
}

const CLOSE_CODES: Record<number, string> = { 4401: "UNAUTHENTICATED", 4403: "FORBIDDEN", 4404: "NOT_FOUND" };

async function subscribeAs(
  actor: Actor,
  op: { query: string; variables: Record<string, unknown> },
  field: string,
  trigger?: () => Promise<unknown>,
): Promise<string> {
  const client = wsClient(server.wsUrl, credentials[actor]);
  const c = collect(client, op.query, op.variables);
  try {
    await Bun.sleep(150);
    await trigger?.();
    return await Promise.race([
      c.until(() => true, trigger ? 5000 : 1500).then((r: any) => classify(r.errors, r.data, field)),
      c.completed.then(() => {
        const e = c.errors[0] as any;
        if (!e) return "allowed";
        if (Array.isArray(e)) return classify(e, null, field);
        return CLOSE_CODES[e.code] ?? `closed ${e.code} ${e.reason}`;
      }),
    ]);
  } catch {
    // Nothing arrived and nothing failed: subscribed (no event of this kind happened meanwhile).
    return "allowed";
  } finally {
    c.dispose();
    await client.dispose();
  }
}

/** Events that make an allowed subscription deliver something (so "allowed" is seen, not assumed). */
const TRIGGERS: Record<string, (w: World) => Promise<unknown>> = {
  sessionEvents: (w) =>
    gqlOk(server, people.owner.token, "mutation($b: ID!) { checkpoint(branchId: $b) { id } }", {
      b: w.f.branchId,
    }),
  presence: (w) =>
    gqlOk(server, people.owner.token, "mutation($s: ID!) { announcePresence(sessionId: $s) { key } }", {
      s: w.f.sessionId,
    }),
};

/** After a row: undo what would change later rows (a model key would make prompt/explore really run). */
const CLEANUP: Record<string, () => Promise<unknown>> = {
  signOutEverywhere: async () => {
    for (const person of Object.keys(people) as (keyof Accounts)[]) {
      const { token } = (
        await gqlOk(
          server,
          "",
          `mutation($e: String!) { login(email: $e, password: "password123") { token } }`,
          {
            e: people[person].email,
          },
        )
      ).login;
      people[person].token = token;
      credentials[person] = token;
    }
  },
  setModelKey: () =>
    Promise.all(Object.values(people).map((p) => gqlOk(server, p.token, "mutation { deleteModelKey }"))),
};

// ---- The rows. ----

interface Row {
  root: Root;
  key: string;
  field: GraphQLField<unknown, unknown>;
  rule: Rule;
}

const ROOTS = {
  Query: schema.getQueryType(),
  Mutation: schema.getMutationType(),
  Subscription: schema.getSubscriptionType(),
};
const rows: Row[] = [];
const unclassified: string[] = [];
const stale: string[] = [];
for (const root of Object.keys(ROOTS) as Root[]) {
  const fields = ROOTS[root]?.getFields() ?? {};
  const policy = POLICY[root];
  for (const field of Object.values(fields)) {
    const keys = Object.keys(policy).filter((k) => k === field.name || k.startsWith(`${field.name}(`));
    if (!keys.includes(field.name)) unclassified.push(`${root}.${field.name}`);
    for (const key of keys) {
      const entry = policy[key]!;
      rows.push({ root, key, field, rule: typeof entry === "string" ? { need: entry } : entry });
    }
  }
  for (const key of Object.keys(policy)) if (!fields[key.replace(/\(.*$/, "")]) stale.push(`${root}.${key}`);
}

beforeAll(async () => {
  server = await startTestServer({ AUTH_RATE_LIMIT_PER_MINUTE: "100000" });
  people = await signUpAccounts(server);
  bystander = await server.signUp(`bystander-${crypto.randomUUID().slice(0, 8)}@example.com`);
  for (const actor of ACTORS) {
    if (actor in people) credentials[actor] = people[actor as keyof Accounts].token;
  }
  const key = (scopes: string[]) =>
    gqlOk(
      server,
      people.owner.token,
      'mutation($s: [String!]) { createApiKey(name: "matrix", scopes: $s) { secret apiKey { id } } }',
      { s: scopes },
    ).then((d) => d.createApiKey);
  credentials.readonly = (await key(["read"])).secret;
  const revoked = await key(["read", "write"]);
  await gqlOk(server, people.owner.token, "mutation($id: ID!) { revokeApiKey(id: $id) { id } }", {
    id: revoked.apiKey.id,
  });
  credentials.revoked = revoked.secret;
});
afterAll(() => server.close());

describe("the policy covers the schema", () => {
  test("every Query, Mutation and Subscription field is classified in POLICY", () => {
    // A failure here means: a new operation is not covered by the authorization policy. Decide who
    // may call it and add it to POLICY (and its arguments to the tables above if they are new).
    if (unclassified.length > 0) {
      throw new Error(
        `New operations not covered by the authorization policy (classify them in POLICY): ${unclassified.join(", ")}`,
      );
    }
  });
  test("POLICY names no field the schema lacks", () => {
    expect(stale).toEqual([]);
  });
});

describe("authorization matrix", () => {
  for (const row of rows) {
    test(`${row.root} ${row.key} needs ${row.rule.need}`, async () => {
      let world = await makeWorld();
      let consumed = false;
      const outcomes: Record<string, string> = {};
      const wanted: Record<string, string> = {};
      for (const actor of ACTORS) wanted[actor] = expected(actor, row.rule.need, row.root);

      if (row.root === "Subscription") {
        // Subscriptions change nothing: every actor at once, on one fixture.
        const op = operation(row.root, row.field, row.rule, world);
        const trigger = TRIGGERS[row.field.name];
        const results = await Promise.all(
          ACTORS.map((actor) =>
            subscribeAs(actor, op, row.field.name, trigger ? () => trigger(world) : undefined),
          ),
        );
        ACTORS.forEach((actor, i) => {
          outcomes[actor] = results[i]!;
        });
      } else {
        for (const actor of ACTORS) {
          if (row.rule.fresh && consumed && wanted[actor] === "allowed") world = await makeWorld();
          const op = operation(row.root, row.field, row.rule, world);
          const res = await server.gql(op.query, op.variables, credentials[actor]);
          outcomes[actor] = classify(res.errors, res.data, row.field.name);
          if (wanted[actor] === "allowed") consumed = true;
        }
      }
      await CLEANUP[row.field.name]?.();
      expect(outcomes).toEqual(wanted);
    }, 60_000);
  }
});
