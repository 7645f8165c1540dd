// Bad input gets a clear, typed error: never a 500 with a stack, never a leak of SQL or internals.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { createClient } from "@libsql/client";
import { codeOf, startTestServer, type TestServer } from "../utils/server.ts";

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({
    MAX_BODY_BYTES: "64kb",
    GRAPHQL_MAX_DEPTH: "2",
    GRAPHQL_MAX_ALIASES: "5",
  });
});
afterAll(() => server.close());

const LEAKS = /\bat .*\.(ts|js):\d+|SQLITE|sqlite|drizzle|libsql|node_modules|Traceback|stack/i;

async function post(body: BodyInit, headers: Record<string, string> = {}, base = server.url) {
  const res = await fetch(`${base}/graphql`, {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/graphql-response+json", ...headers },
    body,
  });
  const text = await res.text();
  expect(text).not.toMatch(LEAKS);
  return { status: res.status, body: JSON.parse(text), headers: res.headers };
}

describe("malformed requests", () => {
  test("malformed JSON is a 400 with BAD_USER_INPUT and no parser internals", async () => {
    for (const body of ['{"query": ', "not json", "[1,2", '{"query": "{ me { id } }", "variables": [}']) {
      const res = await post(body);
      expect(res.status).toBe(400);
      expect(codeOf(res.body)).toBe("BAD_USER_INPUT");
      expect(res.body.errors[0].extensions.originalError).toBeUndefined();
    }
  });

  test("a body over the limit is a 413 PAYLOAD_TOO_LARGE, with or without Content-Length", async () => {
    const big = JSON.stringify({ query: "{ __typename }", variables: { x: "a".repeat(200_000) } });
    const declared = await post(big);
    expect(declared.status).toBe(413);
    expect(codeOf(declared.body)).toBe("PAYLOAD_TOO_LARGE");

    const bytes = new TextEncoder().encode(big);
    const stream = new ReadableStream({
      start(controller) {
        for (let i = 0; i < bytes.length; i += 16_384) controller.enqueue(bytes.slice(i, i + 16_384));
        controller.close();
      },
    });
    const chunked = await post(stream);
    expect(chunked.status).toBe(413);
    expect(codeOf(chunked.body)).toBe("PAYLOAD_TOO_LARGE");
  });

  test("a body just under the limit is served", async () => {
    const res = await post(JSON.stringify({ query: "{ __typename }", variables: { x: "a".repeat(60_000) } }));
    expect(res.status).toBe(200);
    expect(res.body.data.__typename).toBe("Query");
  });

  test("wrong content type and wrong method get typed errors", async () => {
    const res = await fetch(`${server.url}/graphql`, {
      method: "POST",
      headers: { "content-type": "text/plain" },
      body: "{ __typename }",
    });
    expect(res.status).toBe(415);
    expect(codeOf(await res.json())).toBe("BAD_USER_INPUT");
    const put = await fetch(`${server.url}/graphql`, { method: "PUT", body: "{}" });
    expect(put.status).toBe(405);
    expect(codeOf(await put.json())).toBe("BAD_USER_INPUT");
  });

  test("an unknown path is a typed NOT_FOUND", async () => {
    const res = await fetch(`${server.url}/nope`);
    expect(res.status).toBe(404);
    expect(codeOf(await res.json())).toBe("NOT_FOUND");
  });
});

describe("invalid operations", () => {
  const cases: [string, string, Record<string, unknown>?][] = [
    ["syntax error", "{ me { id "],
    ["unknown field", "{ me { id password } }"],
    ["unknown argument", '{ me(id: "x") { id } }'],
    ["wrong argument type", "mutation { login(email: 42, password: true) { token } }"],
    [
      "wrong variable type",
      'mutation($e: String!) { login(email: $e, password: "x") { token } }',
      { e: { nested: 1 } },
    ],
    ["missing variable", 'mutation($e: String!) { login(email: $e, password: "x") { token } }', {}],
    ["missing required argument", 'mutation { login(email: "a@b.co") { token } }'],
    ["too deep", "{ me { apiKeys { id } } }"],
    ["too many aliases", "{ a: me { id } b: me { id } c: me { id } d: me { id } e: me { id } f: me { id } }"],
    ["unknown field on a nested type", "{ health { ok nope } }"],
  ];
  for (const [name, query, variables] of cases) {
    test(name, async () => {
      const res = await post(JSON.stringify({ query, variables }));
      expect(res.status).toBeLessThan(500);
      expect(res.body.errors?.length).toBeGreaterThan(0);
      expect(codeOf(res.body)).toBe("BAD_USER_INPUT");
      expect(res.body.data ?? null).toBeNull();
    });
  }
});

describe("unexpected failures", () => {
  test("a database failure is masked as INTERNAL with a request id that the log carries", async () => {
    const own = await startTestServer();
    const { token } = await own.signUp();
    // Break the database under the running server, as a failed migration or disk error would.
    const db = createClient({ url: `file:${join(own.dataDir, "opencode-cloud.db")}` });
    await db.execute("ALTER TABLE api_keys RENAME TO api_keys_gone");
    try {
      const res = await post(
        JSON.stringify({ query: 'mutation { createApiKey(name: "x") { secret } }' }),
        {
          authorization: `Bearer ${token}`,
        },
        own.url,
      );
      expect(res.status).toBeLessThan(500); // a field error: the response itself is well-formed
      const error = res.body.errors[0];
      expect(error.extensions.code).toBe("INTERNAL");
      const requestId = res.headers.get("x-request-id");
      expect(error.extensions.requestId).toBe(requestId);
      expect(error.message).toContain(requestId);
      const logged = own.logs.find((l) => l.requestId === requestId && l.level === "error");
      expect(logged).toBeDefined();
      expect(JSON.stringify(logged)).toContain("api_keys");
    } finally {
      await db.execute("ALTER TABLE api_keys_gone RENAME TO api_keys");
      db.close();
      await own.close();
    }
  });
});
