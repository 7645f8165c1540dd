import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { SignJWT } from "jose";
import { codeOf, startTestServer, type TestServer } from "../utils/server.ts";

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({ AUTH_RATE_LIMIT_PER_MINUTE: "1000" });
});
afterAll(() => server.close());

const ME = "{ me { id email name apiKeys { id name prefix scopes lastUsedAt revokedAt } } }";

describe("register, login, me", () => {
  test("register returns a working token and the user", async () => {
    const res = await server.gql(
      `mutation { register(email: "  Ada@Example.com ", password: "correct horse", name: "Ada") {
        token expiresAt user { id email name } } }`,
    );
    expect(res.errors).toBeUndefined();
    const { token, expiresAt, user } = res.data!.register;
    expect(user.email).toBe("ada@example.com");
    expect(user.name).toBe("Ada");
    expect(user.id).toMatch(/^usr_/);
    expect(new Date(expiresAt).getTime()).toBeGreaterThan(Date.now());

    const me = await server.gql(ME, {}, token);
    expect(me.data!.me).toMatchObject({ id: user.id, email: "ada@example.com", name: "Ada", apiKeys: [] });
  });

  test("login with the right password works; a wrong one or unknown email does not", async () => {
    const { email, userId } = await server.signUp();
    const ok = await server.gql(
      `mutation($e: String!) { login(email: $e, password: "password123") { token user { id } } }`,
      {
        e: email.toUpperCase(),
      },
    );
    expect(ok.data!.login.user.id).toBe(userId);
    const me = await server.gql(ME, {}, ok.data!.login.token);
    expect(me.data!.me.id).toBe(userId);

    const wrong = await server.gql(
      `mutation($e: String!) { login(email: $e, password: "nope-nope") { token } }`,
      { e: email },
    );
    expect(codeOf(wrong)).toBe("UNAUTHENTICATED");
    const unknown = await server.gql(
      `mutation { login(email: "ghost@example.com", password: "password123") { token } }`,
    );
    expect(codeOf(unknown)).toBe("UNAUTHENTICATED");
    expect(unknown.errors![0]!.message).toBe(wrong.errors![0]!.message);
  });

  test("me is null when anonymous", async () => {
    const res = await server.gql("{ me { id } }");
    expect(res.status).toBe(200);
    expect(res.data!.me).toBeNull();
  });

  test("duplicate email is a CONFLICT; bad email and short password are BAD_USER_INPUT", async () => {
    const { email } = await server.signUp();
    const dup = await server.gql(
      `mutation($e: String!) { register(email: $e, password: "password123") { token } }`,
      {
        e: email,
      },
    );
    expect(codeOf(dup)).toBe("CONFLICT");
    const badEmail = await server.gql(
      `mutation { register(email: "not-an-email", password: "password123") { token } }`,
    );
    expect(codeOf(badEmail)).toBe("BAD_USER_INPUT");
    expect(badEmail.errors![0]!.extensions!.field).toBe("email");
    const short = await server.gql(
      `mutation { register(email: "short@example.com", password: "short") { token } }`,
    );
    expect(codeOf(short)).toBe("BAD_USER_INPUT");
    expect(short.errors![0]!.extensions!.field).toBe("password");
  });

  test("concurrent registrations of one email: exactly one wins", async () => {
    const email = `race-${crypto.randomUUID()}@example.com`;
    const results = await Promise.all(
      [1, 2, 3].map(() =>
        server.gql(`mutation($e: String!) { register(email: $e, password: "password123") { token } }`, {
          e: email,
        }),
      ),
    );
    expect(results.filter((r) => r.data?.register).length).toBe(1);
    expect(results.filter((r) => codeOf(r) === "CONFLICT").length).toBe(2);
  });
});

describe("API keys", () => {
  test("create -> use -> revoke -> refused", async () => {
    const { token, userId } = await server.signUp();
    const created = await server.gql(
      `mutation { createApiKey(name: "ci") { secret apiKey { id name prefix scopes lastUsedAt revokedAt } } }`,
      {},
      token,
    );
    expect(created.errors).toBeUndefined();
    const { secret, apiKey } = created.data!.createApiKey;
    expect(secret).toStartWith(apiKey.prefix);
    expect(apiKey.scopes).toEqual(["read", "write"]);
    expect(apiKey.lastUsedAt).toBeNull();

    const viaKey = await server.gql(ME, {}, secret);
    expect(viaKey.data!.me.id).toBe(userId);
    const listed = viaKey.data!.me.apiKeys.find((k: { id: string }) => k.id === apiKey.id);
    expect(listed.lastUsedAt).not.toBeNull();
    // The secret is never readable again.
    expect(viaKey.text).not.toContain(secret.slice(apiKey.prefix.length));

    const revoked = await server.gql(
      `mutation($id: ID!) { revokeApiKey(id: $id) { id revokedAt } }`,
      { id: apiKey.id },
      token,
    );
    expect(revoked.data!.revokeApiKey.revokedAt).not.toBeNull();

    const refused = await server.gql(ME, {}, secret);
    expect(refused.status).toBe(401);
    expect(codeOf(refused)).toBe("UNAUTHENTICATED");
    expect(refused.headers.get("www-authenticate")).toContain("Bearer");
  });

  test("a read-only key can query but not mutate", async () => {
    const { token } = await server.signUp();
    const created = await server.gql(
      `mutation { createApiKey(name: "ro", scopes: ["read"]) { secret } }`,
      {},
      token,
    );
    const secret = created.data!.createApiKey.secret;
    expect((await server.gql("{ me { id } }", {}, secret)).data!.me).not.toBeNull();
    const denied = await server.gql(`mutation { createApiKey(name: "escalate") { secret } }`, {}, secret);
    expect(codeOf(denied)).toBe("FORBIDDEN");
  });

  test("unknown scopes are rejected; another user's key cannot be revoked or seen", async () => {
    const alice = await server.signUp();
    const bob = await server.signUp();
    const bad = await server.gql(
      `mutation { createApiKey(name: "x", scopes: ["admin"]) { secret } }`,
      {},
      alice.token,
    );
    expect(codeOf(bad)).toBe("BAD_USER_INPUT");

    const key = await server.gql(
      `mutation { createApiKey(name: "alice") { apiKey { id } } }`,
      {},
      alice.token,
    );
    const id = key.data!.createApiKey.apiKey.id;
    const steal = await server.gql(`mutation($id: ID!) { revokeApiKey(id: $id) { id } }`, { id }, bob.token);
    expect(codeOf(steal)).toBe("NOT_FOUND");
    const missing = await server.gql(
      `mutation { revokeApiKey(id: "key_doesnotexist") { id } }`,
      {},
      bob.token,
    );
    expect(steal.errors![0]!.message).toBe(missing.errors![0]!.message);
  });

  test("API key mutations need a signed-in user", async () => {
    const res = await server.gql(`mutation { createApiKey(name: "anon") { secret } }`);
    expect(codeOf(res)).toBe("UNAUTHENTICATED");
  });
});

describe("bad credentials are refused", () => {
  async function signWith(secret: Uint8Array, claims: Record<string, unknown>, exp: number) {
    return new SignJWT(claims)
      .setProtectedHeader({ alg: "HS256" })
      .setIssuer("opencode.cloud")
      .setAudience("opencode.cloud/api")
      .setIssuedAt(exp - 3600)
      .setExpirationTime(exp)
      .sign(secret);
  }

  test("an expired token signed with the server's own key", async () => {
    const { userId } = await server.signUp();
    const secret = new TextEncoder().encode(readFileSync(join(server.dataDir, "jwt-secret"), "utf8").trim());
    const valid = await signWith(secret, { sub: userId }, Math.floor(Date.now() / 1000) + 600);
    expect((await server.gql("{ me { id } }", {}, valid)).data!.me.id).toBe(userId);

    const expired = await signWith(secret, { sub: userId }, Math.floor(Date.now() / 1000) - 60);
    const res = await server.gql("{ me { id } }", {}, expired);
    expect(res.status).toBe(401);
    expect(codeOf(res)).toBe("UNAUTHENTICATED");
    expect(res.errors![0]!.extensions!.reason).toBe("expired");
  });

  test("a forged token (other key), a garbage token, a malformed header", async () => {
    const { userId } = await server.signUp();
    const forged = await signWith(
      new TextEncoder().encode("x".repeat(48)),
      { sub: userId },
      Date.now() / 1000 + 600,
    );
    for (const token of [forged, "garbage", "occ_notarealkey", `${forged.slice(0, -4)}AAAA`]) {
      const res = await server.gql("{ me { id } }", {}, token);
      expect(res.status).toBe(401);
      expect(codeOf(res)).toBe("UNAUTHENTICATED");
    }
    const res = await fetch(`${server.url}/graphql`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: "Basic dXNlcjpwYXNz" },
      body: JSON.stringify({ query: "{ me { id } }" }),
    });
    expect(res.status).toBe(401);
    expect((await res.json()).errors[0].extensions.code).toBe("UNAUTHENTICATED");
  });

  test("an alg=none token is refused", async () => {
    const { userId } = await server.signUp();
    const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString("base64url");
    const unsigned = `${b64({ alg: "none" })}.${b64({ sub: userId, iss: "opencode.cloud", aud: "opencode.cloud/api", exp: Date.now() / 1000 + 600 })}.`;
    expect(codeOf(await server.gql("{ me { id } }", {}, unsigned))).toBe("UNAUTHENTICATED");
  });
});

describe("rate limits", () => {
  test("login attempts beyond the limit are RATE_LIMITED with a retry hint", async () => {
    const limited = await startTestServer({ AUTH_RATE_LIMIT_PER_MINUTE: "3" });
    try {
      const attempt = () =>
        limited.gql(`mutation { login(email: "x@example.com", password: "whatever1") { token } }`);
      for (let i = 0; i < 3; i++) expect(codeOf(await attempt())).toBe("UNAUTHENTICATED");
      const res = await attempt();
      expect(codeOf(res)).toBe("RATE_LIMITED");
      expect(res.status).toBe(429);
      expect(res.errors![0]!.extensions!.retryAfterSeconds).toBeGreaterThan(0);
    } finally {
      await limited.close();
    }
  });
});
