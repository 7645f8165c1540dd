import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type Client, createClient } from "graphql-ws";
import { codeOf, startTestServer, type TestServer } from "../utils/server.ts";
import { collect } from "../utils/ws.ts";

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(() => server.close());

const ACCOUNT_EVENTS = "subscription { accountEvents { kind apiKey { id name } } }";

interface Observed {
  client: Client;
  closed: Promise<{ code: number; reason: string }>;
}

function connect(connectionParams?: Record<string, unknown>): Observed {
  let resolveClosed!: (e: { code: number; reason: string }) => void;
  const closed = new Promise<{ code: number; reason: string }>((r) => {
    resolveClosed = r;
  });
  const client = createClient({
    url: server.wsUrl,
    connectionParams,
    lazy: false,
    retryAttempts: 0,
    on: { closed: (event) => resolveClosed(event as { code: number; reason: string }) },
    onNonLazyError: () => {},
  });
  return { client, closed };
}

/**
 * Waits until the server has registered the subscription (it acks by being reachable via a query).
 * The query is read to its end: breaking out early sends a `complete` that can cross a close frame
 * the server sends next, and Deno then drops the connection (1006) instead of closing with its code.
 */
async function settle(client: Client) {
  for await (const _ of client.iterate({ query: "{ __typename }" })) {
  }
}

describe("graphql-ws", () => {
  test("authenticates through connectionParams and receives a subscription event", async () => {
    const { token } = await server.signUp();
    const { client } = connect({ authorization: `Bearer ${token}` });
    try {
      const sub = collect(client, ACCOUNT_EVENTS);
      await settle(client);
      const created = await server.gql(
        `mutation { createApiKey(name: "from-test") { apiKey { id } } }`,
        {},
        token,
      );
      const event = await sub.until(() => true);
      expect(event.errors).toBeUndefined();
      expect(event.data.accountEvents).toEqual({
        kind: "API_KEY_CREATED",
        apiKey: { id: created.data!.createApiKey.apiKey.id, name: "from-test" },
      });
      sub.dispose();
    } finally {
      await client.dispose();
    }
  });

  test("a bare token in connectionParams.token works too, and queries run over the socket", async () => {
    const { token, userId } = await server.signUp();
    const { client } = connect({ token });
    try {
      for await (const result of client.iterate({ query: "{ me { id } }" })) {
        expect((result.data as any).me.id).toBe(userId);
        break;
      }
    } finally {
      await client.dispose();
    }
  });

  test("events of one user never reach another", async () => {
    const alice = await server.signUp();
    const bob = await server.signUp();
    const { client } = connect({ authorization: `Bearer ${bob.token}` });
    try {
      const sub = collect(client, ACCOUNT_EVENTS);
      await settle(client);
      await server.gql(`mutation { createApiKey(name: "alice-only") { secret } }`, {}, alice.token);
      await server.gql(`mutation { createApiKey(name: "bob-own") { secret } }`, {}, bob.token);
      const event = await sub.until(() => true);
      expect(event.data.accountEvents.apiKey.name).toBe("bob-own");
      expect(sub.results.length).toBe(1);
    } finally {
      await client.dispose();
    }
  });

  test("an anonymous subscription to account events gets UNAUTHENTICATED", async () => {
    const { client } = connect();
    try {
      // A subscribe resolver that throws yields one result with errors, then completes.
      const sub = collect(client, ACCOUNT_EVENTS);
      const result = await sub.until(() => true);
      expect(result.data ?? null).toBeNull();
      expect(result.errors[0].extensions.code).toBe("UNAUTHENTICATED");
    } finally {
      await client.dispose();
    }
  });

  test("a garbage or expired credential is refused at connection with 4401", async () => {
    for (const params of [{ authorization: "Bearer garbage" }, { token: "occ_nope" }]) {
      const { client, closed } = connect(params);
      const event = await closed;
      expect(event.code).toBe(4401);
      expect(event.reason.length).toBeGreaterThan(0);
      await client.dispose();
    }
  });

  test("revoking the API key closes the open socket that used it", async () => {
    const { token } = await server.signUp();
    const created = await server.gql(
      `mutation { createApiKey(name: "live") { secret apiKey { id } } }`,
      {},
      token,
    );
    const { secret, apiKey } = created.data!.createApiKey;
    const { client, closed } = connect({ authorization: `Bearer ${secret}` });
    collect(client, ACCOUNT_EVENTS);
    await settle(client);
    await server.gql(`mutation($id: ID!) { revokeApiKey(id: $id) { id } }`, { id: apiKey.id }, token);
    const event = await closed;
    expect(event.code).toBe(4401);
    expect(event.reason).toContain("revoked");
    await client.dispose();
    // And the revoked key cannot connect again.
    const again = connect({ authorization: `Bearer ${secret}` });
    expect((await again.closed).code).toBe(4401);
    await again.client.dispose();
  });

  test("validation and syntax errors fail the operation with a code, and the socket stays usable", async () => {
    const { client, closed } = connect();
    let isClosed = false;
    closed.then(() => {
      isClosed = true;
    });
    try {
      for (const query of ["subscription { nope }", "subscription { accountEvents {"]) {
        const sub = collect(client, query);
        await sub.completed;
        const errors = sub.errors[0] as { extensions?: Record<string, unknown> }[];
        expect(errors[0]?.extensions?.code).toBe("BAD_USER_INPUT");
        expect(errors[0]?.extensions?.originalError).toBeUndefined();
      }
      await settle(client);
      expect(isClosed).toBe(false);
    } finally {
      await client.dispose();
    }
  });

  test("an upgrade without the graphql-transport-ws subprotocol is refused with a typed error", async () => {
    const res = await fetch(server.wsUrl.replace(/^ws/, "http"), {
      headers: {
        upgrade: "websocket",
        connection: "upgrade",
        "sec-websocket-version": "13",
        "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
      },
    });
    expect(res.status).toBe(400);
    expect(codeOf(await res.json())).toBe("BAD_USER_INPUT");
  });
});
