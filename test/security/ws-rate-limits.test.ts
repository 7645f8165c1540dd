// graphql-ws operations count against the same per-user and per-API-key request limits as HTTP
// requests, in the same counters: over the real graphql-ws client against the real server, an
// operation past the limit fails alone with RATE_LIMITED and retryAfterSeconds while the socket and
// its subscriptions go on; mixing transports, and (with Redis or Upstash) instances, dodges nothing.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Client, createClient } from "graphql-ws";
import { type ServerProcess, startServerProcess } from "../../scripts/lib/server-process.ts";
import { startTestServer, type TestServer } from "../utils/server.ts";
import { sharedEnv, useSharedBackends } from "../utils/shared-state.ts";
import { collect } from "../utils/ws.ts";

interface Result {
  data?: any;
  errors?: { message: string; extensions?: Record<string, any> }[];
}

interface Socket {
  client: Client;
  /** The close event, if the socket closed. */
  closedWith: () => { code: number; reason: string } | null;
}

function connect(url: string, credential: string): Socket {
  let closed: { code: number; reason: string } | null = null;
  const client = createClient({
    url,
    connectionParams: { authorization: `Bearer ${credential}` },
    lazy: false,
    retryAttempts: 0,
    on: {
      closed: (event) => {
        closed = event as { code: number; reason: string };
      },
    },
    onNonLazyError: () => {},
  });
  return { client, closedWith: () => closed };
}

/** One operation over the socket: its first result, or the errors it failed with. */
function once(client: Client, query: string): Promise<Result> {
  return new Promise((resolve) => {
    let first: Result | undefined;
    client.subscribe(
      { query },
      {
        next: (value) => {
          first ??= value as Result;
        },
        error: (error) => resolve({ errors: Array.isArray(error) ? error : [error as never] }),
        complete: () => resolve(first ?? {}),
      },
    );
  });
}

async function http(url: string, query: string, credential: string) {
  const res = await fetch(`${url}/graphql`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      accept: "application/graphql-response+json",
      authorization: `Bearer ${credential}`,
    },
    body: JSON.stringify({ query }),
  });
  return {
    status: res.status,
    retryAfter: res.headers.get("retry-after"),
    ...((await res.json()) as Result),
  };
}

const wsUrlOf = (url: string) => `${url.replace(/^http/, "ws")}/graphql`;

function expectRateLimited(result: Result) {
  expect(result.data ?? null).toBeNull();
  expect(result.errors).toHaveLength(1);
  const extensions = result.errors![0]!.extensions!;
  expect(extensions.code).toBe("RATE_LIMITED");
  expect(extensions.retryAfterSeconds).toBeGreaterThan(0);
  expect(extensions.retryAfterSeconds).toBeLessThanOrEqual(60);
  expect(result.errors![0]!.message).toContain(`${extensions.retryAfterSeconds} s`);
}

describe("graphql-ws request limits, one instance", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({
      REQUESTS_PER_MINUTE_PER_USER: "12",
      REQUESTS_PER_MINUTE_PER_API_KEY: "4",
    });
  });
  afterAll(() => server.close());

  test("an API key's operations past its limit fail alone; the socket and its subscription go on", async () => {
    const { token } = await server.signUp();
    const key = (await server.gql(`mutation { createApiKey(name: "ws") { secret } }`, {}, token)).data!
      .createApiKey.secret as string;
    const socket = connect(server.wsUrl, key);
    try {
      // 1: the subscription; 2-4: queries. The key's limit is 4 a minute.
      const events = collect(socket.client, "subscription { accountEvents { kind apiKey { name } } }");
      for (let i = 0; i < 3; i++)
        expect((await once(socket.client, "{ me { id } }")).data.me.id).toBeString();
      expectRateLimited(await once(socket.client, "{ me { id } }"));
      // The same counter as HTTP: the key is refused there too.
      const overHttp = await http(server.url, "{ me { id } }", key);
      expect(overHttp.status).toBe(429);
      expect(Number(overHttp.retryAfter)).toBeGreaterThan(0);
      // The refused operation failed alone: the subscription still delivers, the socket is open.
      await server.gql(`mutation { createApiKey(name: "after the limit") { secret } }`, {}, token);
      const event = await events.until((r) => r.data?.accountEvents?.apiKey?.name === "after the limit");
      expect(event.errors).toBeUndefined();
      expect(events.errors).toEqual([]);
      expect(socket.closedWith()).toBeNull();
      // Another limited operation on the same socket: refused again, still without closing it.
      expectRateLimited(await once(socket.client, "{ me { email } }"));
      expect(socket.closedWith()).toBeNull();
      events.dispose();
    } finally {
      await socket.client.dispose();
    }
  });

  test("per user: HTTP requests and socket operations with a token share one limit", async () => {
    const { token } = await server.signUp();
    const socket = connect(server.wsUrl, token);
    try {
      // 12 a minute: 6 over HTTP and 6 over the socket, then both transports are refused.
      for (let i = 0; i < 6; i++) {
        expect((await http(server.url, "{ me { id } }", token)).status).toBe(200);
        expect((await once(socket.client, "{ me { id } }")).errors).toBeUndefined();
      }
      expectRateLimited(await once(socket.client, "{ me { id } }"));
      expect((await http(server.url, "{ me { id } }", token)).status).toBe(429);
      // A second socket of the same user is no way round it.
      const second = connect(server.wsUrl, token);
      expectRateLimited(await once(second.client, "{ me { id } }"));
      expect(second.closedWith()).toBeNull();
      await second.client.dispose();
      // Another user is not affected.
      const other = await server.signUp();
      const theirs = connect(server.wsUrl, other.token);
      expect((await once(theirs.client, "{ me { id } }")).data.me.id).toBe(other.userId);
      await theirs.client.dispose();
    } finally {
      await socket.client.dispose();
    }
  });
});

const shared = useSharedBackends();

for (const kind of ["redis", "upstash"] as const) {
  describe.skipIf(shared.skip)(`graphql-ws request limits, two instances sharing ${kind}`, () => {
    const dir = mkdtempSync(join(tmpdir(), `occ-ws-limits-${kind}-`));
    const servers: ServerProcess[] = [];
    beforeAll(async () => {
      const env = {
        NODE_ENV: "test",
        DATABASE_URL: `file:${join(dir, "shared.db")}`,
        JWT_SECRET: `ws-limits-${crypto.randomUUID()}`,
        REDIS_KEY_PREFIX: `ws-limits-${kind}:`,
        ...sharedEnv(kind, shared.redis, shared.upstash),
        REQUESTS_PER_MINUTE_PER_USER: "10",
      };
      // One after the other: both apply the (same) migrations to the shared database at start.
      servers.push(await startServerProcess(env));
      servers.push(await startServerProcess(env));
    }, 60_000);
    afterAll(async () => {
      for (const server of servers) await server.stop().catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    });

    test("operations over A's socket and B's socket and HTTP on B count once, against one limit", async () => {
      const [a, b] = servers as [ServerProcess, ServerProcess];
      const email = `ws-${crypto.randomUUID().slice(0, 8)}@example.com`;
      const { token } = (
        await a.gql(`mutation($e: String!) { register(email: $e, password: "password123") { token } }`, {
          e: email,
        })
      ).register;
      const onA = connect(wsUrlOf(a.url), token);
      const onB = connect(wsUrlOf(b.url), token);
      try {
        // 10 a minute over both instances and both transports: 4 + 3 + 3.
        for (let i = 0; i < 4; i++) expect((await once(onA.client, "{ me { id } }")).errors).toBeUndefined();
        for (let i = 0; i < 3; i++) expect((await http(b.url, "{ me { id } }", token)).status).toBe(200);
        for (let i = 0; i < 3; i++) expect((await once(onB.client, "{ me { id } }")).errors).toBeUndefined();
        expectRateLimited(await once(onA.client, "{ me { id } }"));
        expectRateLimited(await once(onB.client, "{ me { id } }"));
        expect((await http(a.url, "{ me { id } }", token)).status).toBe(429);
        expect(onA.closedWith()).toBeNull();
        expect(onB.closedWith()).toBeNull();
      } finally {
        await onA.client.dispose();
        await onB.client.dispose();
      }
    }, 60_000);
  });
}
