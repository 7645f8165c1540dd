// A bounded, seeded, schema-driven fuzzer. From the schema it generates a few thousand operations:
// random root fields with random selections (within the depth/cost/alias limits) and random or hostile
// argument values (huge, negative and non-finite numbers, long and unicode strings, NUL, lone
// surrogates, path traversal, wrong types through variables, real fixture ids of the wrong kind...), as
// the owner of a fixture session and as a stranger, over HTTP and over graphql-ws. Every answer must be
// typed: no 5xx, no INTERNAL, every error with a known extensions.code, no stack or SQL text; the
// server must answer /healthz after every batch.
//
// Deterministic: the operations are generated from FUZZ_SEED (fixed by default; printed so a failure
// can be replayed) before any is sent. FUZZ_OPS changes how many; FUZZ_BUDGET_MS caps the wall time.
import { afterAll, beforeAll, expect, test } from "bun:test";
import {
  type GraphQLArgument,
  type GraphQLField,
  type GraphQLInputType,
  type GraphQLNamedType,
  type GraphQLOutputType,
  getNamedType,
  isEnumType,
  isInputObjectType,
  isInterfaceType,
  isLeafType,
  isListType,
  isNonNullType,
  isObjectType,
  isUnionType,
} from "graphql";
import type { Client } from "graphql-ws";
import { ERROR_CODES } from "../../resolvers/errors.ts";
import { schema } from "../../schema/index.ts";
import { startTestServer, type TestServer } from "../utils/server.ts";
import {
  type Accounts,
  explorationFixture,
  gqlOk,
  type SessionFixture,
  sessionFixture,
  signUpAccounts,
} from "../utils/session-fixture.ts";
import { wsClient } from "../utils/ws.ts";

const SEED = Number(process.env.FUZZ_SEED ?? 20_241_124);
const OPS = Number(process.env.FUZZ_OPS ?? 2500);
const BUDGET_MS = Number(process.env.FUZZ_BUDGET_MS ?? 90_000);
const BATCH = 50;
const CONCURRENCY = 6;

/** Stack frames, SQL engine text, internal module names: none may reach a client. */
const LEAK =
  /\n\s+at |\bat .*\.(ts|js):\d+|SQLITE_|sqlite|libsql|drizzle|no such (table|column)|UNIQUE constraint|FOREIGN KEY constraint|node_modules|Traceback/i;
const KNOWN_CODES = new Set(Object.keys(ERROR_CODES));
/** graphql-ws close codes that are typed answers (auth, bad request, rate limit) or a normal end. */
const FINE_CLOSE = new Set([1000, 4400, 4401, 4403, 4404, 4413, 4429]);

// ---- A small seeded PRNG (mulberry32): a dependency would be more code than this. ----

class Rand {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }
  next(): number {
    this.state = (this.state + 0x6d2b79f5) | 0;
    let t = Math.imul(this.state ^ (this.state >>> 15), 1 | this.state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
}

// ---- Values. Raw numbers (1e400, -0, 30 digits) cannot be JSON values in JS; they are spliced into the body. ----

class Raw {
  constructor(readonly text: string) {}
  toJSON() {
    return `\u0001RAW:${this.text}\u0001`;
  }
}
const serialize = (body: unknown) =>
  JSON.stringify(body).replace(/"\\u0001RAW:([^"\\]*)\\u0001"/g, (_m, raw: string) => raw);

const HOSTILE_STRINGS: readonly string[] = [
  "",
  " ",
  "\u0000",
  "a\u0000b",
  "../../../../etc/passwd",
  "..",
  ".",
  "/",
  "//",
  "/etc/passwd",
  "..\\..\\windows\\win.ini",
  "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
  "f.txt/inside",
  "dir/../../x",
  "a/./b//c/",
  "n".repeat(256),
  "é".repeat(200),
  "x".repeat(5000),
  "y".repeat(70_000),
  "\uD800",
  "\uDFFF\uD800x",
  "😀".repeat(64),
  "\u202Eevil.txt",
  "\uFEFFbom",
  "\r\n\r\nX-Injected: 1",
  "' OR '1'='1",
  '"; DROP TABLE users; --',
  // biome-ignore lint/suspicious/noTemplateCurlyInString: a log4shell-style string, on purpose
  "${jndi:ldap://127.0.0.1:1/x}",
  "{{7*7}}",
  "<script>alert(1)</script>",
  "$(id)",
  "`id`",
  "--upload-pack=touch /tmp/occ-fuzz-pwned",
  "-rf",
  "ses_000000000000000000000000zz",
  "br_0000000000000000000000000z",
  "snp_",
  "occ_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
  "Bearer x",
  "-1",
  "NaN",
  "Infinity",
  "1e400",
  "null",
  "__proto__",
  "constructor",
  "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
];
const URLISH: readonly string[] = [
  "file:///etc",
  "/etc",
  "./",
  "../../..",
  "http://127.0.0.1:1/x.git",
  "https://[::1]:1/x",
  "http://169.254.169.254/latest/meta-data/",
  "ftp://127.0.0.1/x",
  "javascript:alert(1)",
  "http://",
  "not a url",
];
const CHARS = [
  ..."abcXYZ019 ./-_",
  "\u0000",
  "\u0001",
  "\n",
  "\t",
  "\\",
  '"',
  "é",
  "ß",
  "中",
  "😀",
  "\uD800",
  "\u202E",
  "\uFFFF",
];
const INTS = [0, 1, -1, 2, 7, 60, 100, 1000, 3600, 65_535, 2_147_483_647, -2_147_483_648, 99_999_999];
const WRONG: readonly unknown[] = [
  "abc",
  "",
  1.5,
  2 ** 53,
  -1,
  true,
  {},
  [],
  [1, "2", null],
  { a: { b: 1 } },
  new Raw("1e400"),
  new Raw("-1e400"),
  new Raw("-0"),
  new Raw("123456789012345678901234567890"),
  null,
];

interface World {
  f: SessionFixture;
  explorationId: string;
  people: Accounts;
  /** The fuzzing actors' credentials: API keys, which a fuzzed signOutEverywhere does not end. */
  keys: Record<"owner" | "stranger", string>;
}
/** A fixture id, resolved when the operation is sent (the world exists only then). */
class FixtureId {
  constructor(readonly pick: (w: World) => string) {}
}
const FIXTURE_IDS: readonly FixtureId[] = [
  new FixtureId((w) => w.f.sessionId),
  new FixtureId((w) => w.f.branchId),
  new FixtureId((w) => w.f.otherBranchId),
  new FixtureId((w) => w.f.snapshotId),
  new FixtureId((w) => w.f.runId),
  new FixtureId((w) => w.explorationId),
  new FixtureId((w) => w.people.viewer.userId),
  new FixtureId((w) => w.people.owner.userId),
];
/** Fields that would destroy the fixture (and so the rest of the run's coverage) get no fixture ids. */
const CONSUMING = new Set(["deleteSession", "deleteBranch", "removeMember", "revokeApiKey"]);

function randomString(r: Rand): string {
  const length = r.pick([0, 1, 2, 5, 16, 64, 300]);
  let s = "";
  for (let i = 0; i < length; i++) s += r.pick(CHARS);
  return s;
}

/** The fixture ids an argument most likely wants, by its name (or, for `id`, the field's type). */
const IDS_BY_NAME: Record<string, readonly FixtureId[]> = {
  sessionId: [FIXTURE_IDS[0]!],
  Session: [FIXTURE_IDS[0]!],
  branchId: [FIXTURE_IDS[1]!, FIXTURE_IDS[2]!],
  Branch: [FIXTURE_IDS[1]!, FIXTURE_IDS[2]!],
  snapshotId: [FIXTURE_IDS[3]!],
  from: [FIXTURE_IDS[3]!],
  to: [FIXTURE_IDS[3]!],
  Snapshot: [FIXTURE_IDS[3]!],
  runId: [FIXTURE_IDS[4]!],
  Run: [FIXTURE_IDS[4]!],
  Exploration: [FIXTURE_IDS[5]!],
  userId: [FIXTURE_IDS[6]!, FIXTURE_IDS[7]!],
};

function randomId(r: Rand, name: string, field: GraphQLField<unknown, unknown>): unknown {
  const roll = r.next();
  const likely =
    IDS_BY_NAME[name] ?? (name === "id" ? IDS_BY_NAME[getNamedType(field.type).name] : undefined);
  if (roll < 0.45 && likely && !CONSUMING.has(field.name)) return r.pick(likely);
  if (roll < 0.5 && !CONSUMING.has(field.name)) return r.pick(FIXTURE_IDS);
  if (roll < 0.7) {
    // Well-formed but unknown: a kind prefix and 26 Crockford base32 characters, as db/ids.ts makes.
    let tail = "";
    for (let i = 0; i < 26; i++) tail += r.pick([..."0123456789abcdefghjkmnpqrstvwxyz"]);
    return `${r.pick(["ses", "br", "snp", "run", "exp", "usr", "key"])}_${tail}`;
  }
  if (roll < 0.9) return r.pick(HOSTILE_STRINGS);
  return randomString(r);
}

function randomJson(r: Rand, depth = 0): unknown {
  const roll = r.int(depth > 3 ? 5 : 8);
  switch (roll) {
    case 0:
      return r.pick(HOSTILE_STRINGS);
    case 1:
      return r.pick(INTS);
    case 2:
      return r.chance(0.5);
    case 3:
      return null;
    case 4:
      return randomString(r);
    case 5:
      return Array.from({ length: r.int(4) }, () => randomJson(r, depth + 1));
    default: {
      const out: Record<string, unknown> = {};
      for (let i = r.int(4); i > 0; i--)
        out[r.chance(0.5) ? r.pick(HOSTILE_STRINGS) : randomString(r)] = randomJson(r, depth + 1);
      return out;
    }
  }
}

/** A file map for createSession: mostly plausible paths and entries, with hostile ones mixed in. */
function randomFiles(r: Rand): unknown {
  if (r.chance(0.1)) return randomJson(r);
  if (r.chance(0.03)) {
    // Deeply nested JSON: the body parser and the scalar must cope.
    let nested: unknown = "x";
    for (let i = 0; i < 5000; i++) nested = [nested];
    return { a: nested };
  }
  const out: Record<string, unknown> = {};
  for (let i = r.int(5); i >= 0; i--) {
    const path = r.chance(0.6)
      ? r.pick(["a", "a/b", "src/app.js", "f.txt", "dir/x", "a/b/c"])
      : r.pick(HOSTILE_STRINGS);
    out[path] = r.chance(0.5)
      ? randomString(r)
      : {
          content: r.chance(0.8) ? randomString(r) : randomJson(r),
          ...(r.chance(0.5) ? { encoding: r.pick(["base64", "utf8", "hex", "", 1]) } : {}),
          ...(r.chance(0.5)
            ? { mode: r.chance(0.5) ? r.pick([0o644, 0o755, 0o4755, 0o1777, 0o7777]) : r.pick(WRONG) }
            : {}),
        };
  }
  return out;
}

/** Strings that mean something to the argument they are given to, mixed with hostile ones. */
function stringFor(r: Rand, name: string): unknown {
  if (r.chance(0.35)) return r.pick(HOSTILE_STRINGS);
  if (r.chance(0.15)) return randomString(r);
  switch (name) {
    case "repoUrl":
      return r.pick(URLISH);
    case "baseURL":
      // Never a reachable endpoint: a stored model key would make prompts start real agent runs.
      return r.pick(["ftp://x", "file:///etc/passwd", "http://", "not a url", "javascript:alert(1)"]);
    case "email":
      return r.pick(["x@example.com", "a@b.c", "no-at-sign", "@", `${"a".repeat(300)}@example.com`]);
    case "password":
      return r.pick(["password123", "short", "p".repeat(300)]);
    case "command":
    case "scoreCommand":
      return r.pick(["true", "echo hi", "exit 3", "cat f.txt", "printf '\\000\\377'", "ls -la /", "echo 42"]);
    case "path":
    case "file":
      return r.pick(["f.txt", "g.txt", "dir", "dir/x", "", "f.txt/inside", "missing"]);
    case "after":
      return r.pick(["0", "-1", "abc", "MTIzOnNlc194", "99999999999999999999", "1.5"]);
    case "provider":
      return r.pick(["local", "contree", "LOCAL", ""]);
    default:
      return randomString(r);
  }
}

function valueFor(
  r: Rand,
  type: GraphQLInputType,
  name: string,
  field: GraphQLField<unknown, unknown>,
  depth = 0,
): unknown {
  if (r.chance(0.04)) return r.pick(WRONG);
  if (!isNonNullType(type) && r.chance(0.1)) return null;
  const inner = isNonNullType(type) ? type.ofType : type;
  if (isListType(inner)) {
    const length = r.chance(0.05) ? 200 : r.int(4);
    return Array.from({ length }, () => valueFor(r, inner.ofType, name, field, depth + 1));
  }
  if (isInputObjectType(inner)) {
    const out: Record<string, unknown> = {};
    for (const f of Object.values(inner.getFields())) {
      const required = isNonNullType(f.type);
      if ((required && !r.chance(0.03)) || r.chance(0.5))
        out[f.name] = valueFor(r, f.type, f.name, field, depth + 1);
    }
    if (r.chance(0.05)) out[r.pick(["unknownField", "__proto__", "constructor"])] = randomJson(r);
    return out;
  }
  if (isEnumType(inner)) {
    return r.chance(0.9) ? r.pick(inner.getValues()).value : r.pick(["ADMIN", "owner", "", "ROOT"]);
  }
  switch (inner.name) {
    case "ID":
      return randomId(r, name, field);
    case "String":
      return stringFor(r, name);
    case "Int":
      return r.chance(0.8) ? r.pick(INTS) : r.int(2 ** 31) - 2 ** 30;
    case "Float":
      return r.pick([0, -1, 1.5, 1e308, 5e-324, new Raw("1e400"), 2 ** 60]);
    case "Boolean":
      return r.chance(0.5);
    case "JSON":
      return name === "files" ? randomFiles(r) : randomJson(r);
    case "DateTime":
      return r.pick(["2026-01-01T00:00:00Z", "yesterday", "", "9999-99-99"]);
    default:
      return randomJson(r);
  }
}

// ---- Operations. ----

interface Operation {
  index: number;
  actor: "owner" | "stranger";
  transport: "http" | "ws" | "raw";
  root: "query" | "mutation" | "subscription";
  query: string;
  variables: Record<string, unknown>;
  /** transport "raw": the request as sent, with its request-level oddity. */
  raw?: RawRequest;
}

/**
 * A request with an oddity at the HTTP level. In path, headers and body, $AUTH is the actor's
 * credential, $SESSION the fixture session's id, $VARS (and $VARS_URI in the path) the variables.
 */
interface RawRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: string;
}

/** The same operation, sent in an unusual way: other paths, methods, content types, credentials, bodies. */
function rawRequest(r: Rand, query: string): RawRequest {
  const json = { "content-type": "application/json", authorization: "Bearer $AUTH" };
  const body = `{"query":${JSON.stringify(query)},"variables":$VARS}`;
  switch (r.int(9)) {
    case 0:
      return {
        method: "GET",
        path: `/graphql?query=${encodeURIComponent(query)}&variables=${r.pick(["$VARS_URI", "%7B", "%E0%A4%A", "null", "[]"])}`,
        headers: { authorization: "Bearer $AUTH" },
      };
    case 1:
      return {
        method: "POST",
        path: "/graphql",
        headers: {
          ...json,
          "content-type": r.pick([
            "application/graphql",
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/json; charset=latin1",
            "",
          ]),
        },
        body: r.chance(0.5) ? query : body,
      };
    case 2:
      return {
        method: "POST",
        path: "/graphql",
        headers: json,
        body: r.pick([
          body.slice(0, r.int(body.length)),
          `[${body},${body}]`,
          JSON.stringify({ query: 1 }),
          JSON.stringify({ query, variables: "x" }),
          JSON.stringify({ query, operationName: "Nope" }),
          JSON.stringify({ query, extensions: { persistedQuery: { version: 1, sha256Hash: "x" } } }),
          "",
          "\u0000",
        ]),
      };
    case 3:
      return {
        method: "POST",
        path: "/graphql",
        headers: {
          ...json,
          authorization: r.pick([
            "Bearer",
            "Bearer ",
            "Basic dXNlcjpwYXNz",
            "Bearer a b",
            `Bearer ${"x".repeat(8000)}`,
            "Bearer occ_notakey",
            "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ1c3JfeCJ9.",
            "bearer $AUTH",
          ]),
        },
        body,
      };
    case 4:
      return {
        method: "POST",
        path: "/graphql",
        headers: { ...json, "x-request-id": r.pick(["x".repeat(500), "a b", "../", "%00"]) },
        body,
      };
    case 5:
      return {
        method: r.pick(["GET", "HEAD", "OPTIONS", "DELETE", "PATCH"]),
        path: r.pick(["/graphql", "/healthz", "/schema.graphql", "/collab/x", "/"]),
        headers: { authorization: "Bearer $AUTH" },
      };
    default:
      return {
        method: "GET",
        path: `/sessions/${r.pick([
          "%E0%A4%A",
          "%",
          "%00",
          "..%2F..%2Fetc",
          "x".repeat(3000),
          // (through UTF-8 and back: a lone surrogate becomes U+FFFD, which a URL can carry)
          encodeURIComponent(Buffer.from(r.pick(HOSTILE_STRINGS).slice(0, 300)).toString()),
          "$SESSION",
        ])}/tree.svg${r.pick(["", "?token=$AUTH", "?token=", "?token=%E0%A4%A", "?token=occ_x"])}`,
        headers: r.chance(0.5) ? { authorization: "Bearer $AUTH" } : {},
      };
  }
}

class Vars {
  defs: string[] = [];
  values: Record<string, unknown> = {};
  add(r: Rand, arg: GraphQLArgument, field: GraphQLField<unknown, unknown>): string {
    const name = `v${this.defs.length}`;
    this.defs.push(`$${name}: ${String(arg.type)}`);
    // Sometimes a required variable is left out entirely (a variables error, not a crash).
    if (!(isNonNullType(arg.type) && r.chance(0.02)))
      this.values[name] = valueFor(r, arg.type, arg.name, field);
    return `$${name}`;
  }
}

function argsFor(r: Rand, field: GraphQLField<unknown, unknown>, vars: Vars): string {
  const used = field.args.filter((a) => isNonNullType(a.type) || r.chance(0.4));
  if (used.length === 0) return "";
  return `(${used.map((a) => `${a.name}: ${vars.add(r, a, field)}`).join(", ")})`;
}

function selectionFor(r: Rand, type: GraphQLOutputType, depth: number, maxDepth: number, vars: Vars): string {
  const named = getNamedType(type) as GraphQLNamedType;
  if (isLeafType(named)) return "";
  if (isUnionType(named)) {
    const members = named.getTypes();
    const parts = ["__typename"];
    for (let i = r.int(3); i > 0; i--) {
      const member = r.pick(members);
      parts.push(
        `... on ${member.name} ${selectionFor(r, member, depth + 1, maxDepth, vars) || "{ __typename }"}`,
      );
    }
    return `{ ${parts.join(" ")} }`;
  }
  if (!isObjectType(named) && !isInterfaceType(named)) return "{ __typename }";
  if (depth >= maxDepth) return "{ __typename }";
  const fields = Object.values(named.getFields());
  const width = 1 + r.int(depth > 2 ? 2 : 4);
  const parts: string[] = [];
  for (let i = 0; i < width; i++) {
    const f = r.pick(fields);
    const alias = r.chance(0.1) ? `a${i}: ` : "";
    parts.push(
      `${alias}${f.name}${argsFor(r, f, vars)} ${selectionFor(r, f.type, depth + 1, maxDepth, vars)}`.trim(),
    );
  }
  return `{ ${parts.join(" ")} }`;
}

const ROOT_TYPES = {
  query: schema.getQueryType()!,
  mutation: schema.getMutationType()!,
  subscription: schema.getSubscriptionType()!,
};
/** Costly fields (a sandbox, a password hash) come up less often; the rest are equally likely. */
const WEIGHT: Record<string, number> = { exec: 0.5, createSession: 0.5, register: 0.15, login: 0.3 };

function pickField(r: Rand, fields: GraphQLField<unknown, unknown>[]): GraphQLField<unknown, unknown> {
  for (;;) {
    const f = r.pick(fields);
    if (r.next() < (WEIGHT[f.name] ?? 1)) return f;
  }
}

function generate(seed: number, count: number): Operation[] {
  const r = new Rand(seed);
  const ops: Operation[] = [];
  for (let index = 0; index < count; index++) {
    const roll = r.next();
    const root = roll < 0.1 ? "subscription" : roll < 0.55 ? "query" : "mutation";
    const transport = root === "subscription" || r.chance(0.05) ? "ws" : "http";
    const vars = new Vars();
    // Sometimes several root fields in one operation: mutations then run in order and share the
    // request's loaders, which is how a stale cache shows (two forks picking one name, say).
    const count = root !== "subscription" && r.chance(0.2) ? 2 + r.int(3) : 1;
    const calls: string[] = [];
    for (let i = 0; i < count; i++) {
      const field = pickField(r, Object.values(ROOT_TYPES[root].getFields()));
      const call = argsFor(r, field, vars);
      const selection = selectionFor(r, field.type, 1, 1 + r.int(5), vars);
      calls.push(`${count > 1 ? `r${i}: ` : ""}${field.name}${call} ${selection}`);
    }
    const decl = vars.defs.length ? `(${vars.defs.join(", ")})` : "";
    const query = `${root} Fuzz${decl} { ${calls.join(" ")} }`;
    const raw = transport === "http" && r.chance(0.08) ? rawRequest(r, query) : undefined;
    ops.push({
      index,
      actor: r.chance(0.6) ? "owner" : "stranger",
      transport: raw ? "raw" : transport,
      root,
      query,
      variables: vars.values,
      ...(raw ? { raw } : {}),
    });
  }
  return ops;
}

// ---- Sending and judging. ----

let server: TestServer;
let world: World;
const clients: Partial<Record<Operation["actor"], Client>> = {};

function resolveIds(value: unknown): unknown {
  if (value instanceof FixtureId) return value.pick(world);
  if (Array.isArray(value)) return value.map(resolveIds);
  if (value && typeof value === "object" && !(value instanceof Raw)) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, resolveIds(v)]));
  }
  return value;
}

/** What is wrong with a list of GraphQL errors (empty: nothing). */
function judgeErrors(errors: unknown): string[] {
  if (errors === undefined) return [];
  if (!Array.isArray(errors)) return [`errors is not a list: ${String(errors).slice(0, 200)}`];
  const problems: string[] = [];
  for (const e of errors as { message?: unknown; extensions?: { code?: unknown } }[]) {
    const code = e?.extensions?.code;
    if (typeof code !== "string" || !KNOWN_CODES.has(code))
      problems.push(`error without a known code: ${JSON.stringify(e).slice(0, 300)}`);
    else if (code === "INTERNAL") problems.push(`INTERNAL: ${String(e.message).slice(0, 200)}`);
    if (LEAK.test(JSON.stringify(e))) problems.push(`leaks internals: ${JSON.stringify(e).slice(0, 300)}`);
  }
  return problems;
}

async function sendHttp(op: Operation): Promise<string[]> {
  const token = world.keys[op.actor];
  const res = await fetch(`${server.url}/graphql`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      accept: "application/graphql-response+json",
      authorization: `Bearer ${token}`,
    },
    body: serialize({ query: op.query, variables: resolveIds(op.variables) }),
  });
  const text = await res.text();
  const problems: string[] = [];
  if (res.status >= 500) problems.push(`HTTP ${res.status}`);
  let body: { errors?: unknown };
  try {
    body = JSON.parse(text);
  } catch {
    return [...problems, `not JSON (HTTP ${res.status}): ${text.slice(0, 200)}`];
  }
  tally(body.errors, op);
  return [...problems, ...judgeErrors(body.errors)];
}

/** Refused by the runtime's HTTP parser before the app sees the request (a URL of 70 kB): no body to type. */
const TRANSPORT_REFUSALS = new Set([414, 431]);

async function sendRaw(op: Operation): Promise<string[]> {
  const raw = op.raw!;
  const vars = serialize(resolveIds(op.variables));
  const fill = (text: string) =>
    text
      .replaceAll("$AUTH", world.keys[op.actor])
      .replaceAll("$SESSION", world.f.sessionId)
      .replaceAll("$VARS_URI", encodeURIComponent(vars))
      .replaceAll("$VARS", vars);
  const res = await fetch(`${server.url}${fill(raw.path)}`, {
    method: raw.method,
    headers: Object.fromEntries(Object.entries(raw.headers).map(([k, v]) => [k, fill(v)])),
    ...(raw.body !== undefined ? { body: fill(raw.body) } : {}),
  });
  const text = await res.text();
  const problems: string[] = [];
  if (res.status >= 500) problems.push(`HTTP ${res.status}`);
  const type = res.headers.get("content-type") ?? "";
  if (type.includes("json") && raw.method !== "HEAD") {
    let parsed: { errors?: unknown };
    try {
      parsed = JSON.parse(text);
    } catch {
      return [...problems, `bad JSON (HTTP ${res.status}): ${text.slice(0, 200)}`];
    }
    tally(parsed.errors, op);
    problems.push(...judgeErrors(parsed.errors));
  } else if (res.status >= 400 && raw.method !== "HEAD" && !TRANSPORT_REFUSALS.has(res.status)) {
    problems.push(`HTTP ${res.status} without a typed body: ${type} ${text.slice(0, 200)}`);
  }
  if (LEAK.test(text)) problems.push(`leaks internals: ${text.slice(0, 300)}`);
  return problems;
}

/** How operations were answered (by first error code, or "ok"): printed, so a run that only ever
 * reaches validation errors is visible. */
const outcomes: Record<string, number> = {};
const byField: Record<string, Record<string, number>> = {};
function tally(errors: unknown, op: Operation) {
  const first = Array.isArray(errors)
    ? (errors[0] as { extensions?: { code?: unknown; reason?: unknown } })
    : undefined;
  const key = first
    ? `${first.extensions?.code}${first.extensions?.reason ? `/${first.extensions.reason}` : ""}`
    : "ok";
  outcomes[key] = (outcomes[key] ?? 0) + 1;
  const f = `${op.root} ${/\{ (?:r0: )?(\w+)/.exec(op.query)?.[1]} ${op.actor}`;
  byField[f] ??= {};
  byField[f][key] = (byField[f][key] ?? 0) + 1;
}

function clientOf(actor: Operation["actor"]): Client {
  clients[actor] ??= wsClient(server.wsUrl, world.keys[actor]);
  return clients[actor]!;
}

async function sendWs(op: Operation): Promise<string[]> {
  const problems: string[] = [];
  // graphql-ws's client sends JSON it makes itself: raw numbers become what JSON.parse makes of them.
  const variables = JSON.parse(serialize(resolveIds(op.variables)));
  await new Promise<void>((resolve) => {
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      dispose();
      resolve();
    };
    // A subscription may never emit: its first answer, or quiet for a moment, is enough.
    const timer = setTimeout(finish, op.root === "subscription" ? 300 : 10_000);
    const dispose = clientOf(op.actor).subscribe(
      { query: op.query, variables },
      {
        next: (value) => {
          tally((value as { errors?: unknown }).errors, op);
          problems.push(...judgeErrors((value as { errors?: unknown }).errors));
          finish();
        },
        error: (error) => {
          if (Array.isArray(error)) {
            tally(error, op);
            problems.push(...judgeErrors(error));
          } else if (error && typeof error === "object" && "code" in error) {
            const code = (error as CloseEvent).code;
            if (!FINE_CLOSE.has(code)) problems.push(`socket closed ${code} ${(error as CloseEvent).reason}`);
            clients[op.actor] = undefined; // a closed client does not reconnect (retryAttempts: 0)
          } else problems.push(`socket error: ${String(error).slice(0, 200)}`);
          finish();
        },
        complete: finish,
      },
    );
  });
  return problems;
}

beforeAll(async () => {
  server = await startTestServer({
    AUTH_RATE_LIMIT_PER_MINUTE: "100000",
    SANDBOX_ALLOW_LOCAL_REPOS: "false",
    SANDBOX_TIMEOUT_MS: "5000",
    SANDBOX_MAX_OUTPUT_BYTES: "1mb",
  });
  const people = await signUpAccounts(server);
  const f = await sessionFixture(server, people);
  const key = async (person: "owner" | "stranger") =>
    (await gqlOk(server, people[person].token, `mutation { createApiKey(name: "fuzz") { secret } }`))
      .createApiKey.secret as string;
  world = {
    f,
    people,
    explorationId: await explorationFixture(server, f, people.owner.userId),
    keys: { owner: await key("owner"), stranger: await key("stranger") },
  };
  // The fuzzed commands are harmless junk, but only ever run them isolated.
  const isolation = (await gqlOk(server, people.owner.token, "{ health { isolation } }")).health.isolation;
  if (isolation !== "bubblewrap") WEIGHT.exec = 0;
});
afterAll(async () => {
  for (const client of Object.values(clients)) await client?.dispose();
  await server.close();
});

test(`fuzz: ${OPS} schema-driven operations, seed ${SEED}, answer typed errors only`, async () => {
  console.log(`fuzz seed ${SEED}, ${OPS} operations (replay with FUZZ_SEED=${SEED})`);
  const ops = generate(SEED, OPS);
  const failures: { op: Operation; problems: string[] }[] = [];
  const started = Date.now();
  let sent = 0;
  for (let at = 0; at < ops.length && Date.now() - started < BUDGET_MS; at += BATCH) {
    const batch = ops.slice(at, at + BATCH);
    let next = 0;
    const worker = async () => {
      while (next < batch.length) {
        const op = batch[next++]!;
        const send = op.transport === "ws" ? sendWs : op.transport === "raw" ? sendRaw : sendHttp;
        const problems = await send(op).catch((e) => [`request failed: ${String(e)}`]);
        if (problems.length > 0) failures.push({ op, problems });
        sent++;
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    const health = await fetch(`${server.url}/healthz`, { signal: AbortSignal.timeout(15_000) });
    expect({ batch: at / BATCH, healthz: health.status }).toEqual({ batch: at / BATCH, healthz: 200 });
  }
  console.log(`fuzz: ${sent} operations in ${Date.now() - started} ms, ${failures.length} failed`, outcomes);
  if (process.env.FUZZ_VERBOSE) console.log(byField);
  const report = failures.slice(0, 15).map(({ op, problems }) => ({
    replay: `FUZZ_SEED=${SEED} op #${op.index} as ${op.actor} over ${op.transport}`,
    raw: op.raw
      ? `${op.raw.method} ${op.raw.path.slice(0, 200)} ${JSON.stringify(op.raw.headers).slice(0, 200)}`
      : undefined,
    problems,
    query: op.query.slice(0, 600),
    variables: serialize(resolveIds(op.variables)).slice(0, 600),
    // The server's own log of an INTERNAL (by its request id): the cause, for whoever fixes it.
    logged: problems
      .map((p) => /request id ([\w-]+)/.exec(p)?.[1])
      .flatMap((id) => (id ? server.logs.filter((l) => l.requestId === id) : []))
      .map((l) => JSON.stringify(l).slice(0, 1500)),
  }));
  expect(report).toEqual([]);
  // The budget is a safety net, not the plan: on a sane machine every operation is sent.
  expect(sent).toBeGreaterThan(Math.min(OPS, 500));
}, 240_000);
