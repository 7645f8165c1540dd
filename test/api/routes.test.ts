import { afterAll, beforeAll, expect, test } from "bun:test";
import { generateKeyPairSync } from "node:crypto";
import { printSchema } from "graphql";
import { schema } from "../../schema/index.ts";
import { startTestServer, type TestServer, testRuntime } from "../utils/server.ts";

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(() => server.close());

test("/healthz reports the database, version and runtime", async () => {
  const res = await fetch(`${server.url}/healthz`);
  expect(res.status).toBe(200);
  const body = await res.json();
  expect(body).toMatchObject({ ok: true, database: true, provider: "local" });
  expect(["bubblewrap", "none"]).toContain(body.isolation);
  expect(["overlay", "copy"]).toContain(body.workspaces);
  // No isolation must be said out loud.
  if (body.isolation === "none") expect(body.warnings.join(" ")).toContain("bubblewrap");
  expect(body.runtime).toStartWith(`${testRuntime} `); // "bun 1.…" or "deno 2.…" (TEST_RUNTIME)
  expect(res.headers.get("x-request-id")).toBeTruthy();
});

test("/schema.graphql serves the printed schema", async () => {
  const res = await fetch(`${server.url}/schema.graphql`);
  expect(res.headers.get("content-type")).toContain("text/plain");
  expect(await res.text()).toBe(printSchema(schema));
});

test("GraphiQL is served to browsers, bundled (no CDN), with WebSocket subscriptions", async () => {
  const res = await fetch(`${server.url}/graphql`, { headers: { accept: "text/html" } });
  expect(res.status).toBe(200);
  const html = await res.text();
  expect(html).toContain("<title>opencode.cloud</title>");
  expect(html).not.toContain("unpkg.com");
  expect(html).toContain('"subscriptionsProtocol":"WS"');
});

test("a sane x-request-id is echoed; a hostile one is replaced", async () => {
  const mine = await fetch(`${server.url}/healthz`, { headers: { "x-request-id": "trace-123" } });
  expect(mine.headers.get("x-request-id")).toBe("trace-123");
  const hostile = await fetch(`${server.url}/healthz`, {
    headers: { "x-request-id": "<script>alert(1)</script>" },
  });
  expect(hostile.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
});

test("with an Ed25519 JWT_PRIVATE_KEY, tokens are EdDSA-signed and accepted", async () => {
  const { privateKey } = generateKeyPairSync("ed25519");
  const pem = privateKey.export({ type: "pkcs8", format: "pem" }).toString();
  const eddsa = await startTestServer({ JWT_PRIVATE_KEY: pem });
  try {
    const { token, userId } = await eddsa.signUp();
    const header = JSON.parse(Buffer.from(token.split(".")[0]!, "base64url").toString());
    expect(header.alg).toBe("EdDSA");
    expect((await eddsa.gql("{ me { id } }", {}, token)).data!.me.id).toBe(userId);
    // A token from another server (another key) is refused here.
    const other = await server.signUp();
    expect((await eddsa.gql("{ me { id } }", {}, other.token)).status).toBe(401);
  } finally {
    await eddsa.close();
  }
});
