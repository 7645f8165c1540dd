// SIGTERM: stop accepting, let in-flight requests finish, close sockets, close the database, exit 0.
import { expect, test } from "bun:test";
import { createClient } from "graphql-ws";
import { spawnServer } from "../utils/process.ts";

test("SIGTERM finishes the in-flight request, closes subscriptions with 1001 and exits 0", async () => {
  const server = await spawnServer({ SHUTDOWN_GRACE_MS: "10000" });
  const register = await fetch(`${server.url}/graphql`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      query: 'mutation { register(email: "s@example.com", password: "password123") { token } }',
    }),
  });
  const token = (await register.json()).data.register.token;

  // An open, authenticated subscription.
  let closeEvent: { code: number } | undefined;
  const client = createClient({
    url: `${server.url.replace("http", "ws")}/graphql`,
    connectionParams: { token },
    retryAttempts: 0,
    lazy: false,
    on: { closed: (e) => (closeEvent = e as { code: number }) },
    onNonLazyError: () => {},
  });
  client.subscribe(
    { query: "subscription { accountEvents { kind } }" },
    { next() {}, error() {}, complete() {} },
  );
  for await (const _ of client.iterate({ query: "{ __typename }" })) break;

  // A request in flight: its body is still arriving when SIGTERM lands.
  const body = JSON.stringify({ query: "{ me { email } }" });
  let push!: ReadableStreamDefaultController<Uint8Array>;
  const stream = new ReadableStream<Uint8Array>({ start: (c) => (push = c) });
  push.enqueue(new TextEncoder().encode(body.slice(0, 5)));
  const inFlight = fetch(`${server.url}/graphql`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    body: stream,
  });
  await Bun.sleep(200);
  server.proc.kill("SIGTERM");
  await Bun.sleep(200);
  push.enqueue(new TextEncoder().encode(body.slice(5)));
  push.close();

  const response = await inFlight;
  expect(response.status).toBe(200);
  expect((await response.json()).data.me.email).toBe("s@example.com");

  expect(await server.proc.exited).toBe(0);
  expect(closeEvent?.code).toBe(1001);
  expect(server.output()).toContain('"message":"stopped"');
  // Nothing listens any more.
  expect(fetch(`${server.url}/healthz`)).rejects.toThrow();
  await client.dispose();
});
