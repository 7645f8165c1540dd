// Issue 12 #10: an operation over graphql-ws that breaks a graphql-armor limit (depth, cost, aliases,
// tokens) fails alone, with a typed error, as a syntax error does; the socket and the client's other
// subscriptions keep running (it used to close the whole socket with 4500).
import { afterAll, beforeAll, expect, test } from "bun:test";
import { createClient } from "graphql-ws";
import { startTestServer, type TestServer } from "../utils/server.ts";
import { collect } from "../utils/ws.ts";

let server: TestServer;
beforeAll(async () => {
  // Small limits, so the offending operations stay short and legal otherwise.
  server = await startTestServer({
    GRAPHQL_MAX_DEPTH: "4",
    GRAPHQL_MAX_ALIASES: "3",
    GRAPHQL_MAX_TOKENS: "200",
    GRAPHQL_MAX_COST: "30",
  });
});
afterAll(() => server.close());

const ACCOUNT_EVENTS = "subscription { accountEvents { kind apiKey { id name } } }";

// Each one is valid GraphQL against the schema, and refused only for its size.
const OVER_LIMIT: Record<string, string> = {
  depth: 'subscription { sessionEvents(sessionId: "x") { run { branch { session { id } } } } }',
  aliases: "query { a: health { ok } b: health { ok } c: health { ok } d: health { ok } e: health { ok } }",
  cost: "query { me { id email name createdAt apiKeys { id name prefix scopes createdAt lastUsedAt revokedAt } } health { ok version runtime isolation } }",
  tokens: `query { health { ${Array.from({ length: 300 }, () => "ok").join(" ")} } }`,
};

test("a limit violation ends only its operation; the socket and another subscription go on", async () => {
  const { token } = await server.signUp();
  let closedWith: { code: number; reason: string } | null = null;
  const client = createClient({
    url: server.wsUrl,
    connectionParams: { authorization: `Bearer ${token}` },
    lazy: false,
    retryAttempts: 0,
    on: {
      closed: (event) => {
        closedWith = event as { code: number; reason: string };
      },
    },
    onNonLazyError: () => {},
  });
  try {
    const events = collect(client, ACCOUNT_EVENTS);
    // The subscription is registered once a later operation on the same socket answered.
    for await (const _ of client.iterate({ query: "{ __typename }" })) break;

    for (const [limit, query] of Object.entries(OVER_LIMIT)) {
      const refused = collect(client, query);
      await refused.completed;
      const errors = refused.errors[0] as { message: string; extensions?: Record<string, unknown> }[];
      expect(Array.isArray(errors)).toBe(true);
      expect(errors[0]?.extensions?.code).toBe("BAD_USER_INPUT");
      // Refused for the limit meant (armor names it: "Query depth limit of 4 exceeded"...).
      expect(errors[0]?.message.toLowerCase()).toContain(limit.replace(/e?s$/, ""));
      expect(JSON.stringify(errors)).not.toContain("stack");
      expect({ limit, closedWith }).toEqual({ limit, closedWith: null });
    }

    // The first subscription still delivers on the same socket.
    const created = await server.gql(`mutation { createApiKey(name: "after") { apiKey { id } } }`, {}, token);
    const event = await events.until((r) => r.data?.accountEvents?.apiKey?.name === "after");
    expect(event.data.accountEvents.apiKey.id).toBe(created.data!.createApiKey.apiKey.id);
    expect(closedWith).toBeNull();
    events.dispose();
  } finally {
    await client.dispose();
  }
});

test("within the limits the same kind of operation runs", async () => {
  const client = createClient({ url: server.wsUrl, retryAttempts: 0, lazy: true });
  try {
    const ok = collect(client, "query { a: health { ok } b: health { ok } }");
    await ok.completed;
    expect(ok.errors).toEqual([]);
    expect(ok.results[0].data).toEqual({ a: { ok: true }, b: { ok: true } });
  } finally {
    await client.dispose();
  }
});
