// The authenticated hot path costs no database round trip once a credential has been seen, and the
// caches behind that never outlive a revocation: a revoked key or a signed-out token is refused on the
// very next request. (Speed itself is measured by `npm run bench:server`, not here.)
import { afterAll, beforeAll, expect, test } from "bun:test";
import { codeOf, startTestServer, type TestServer } from "../utils/server.ts";

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(() => server.close());

const ME = "{ me { id } }";

test("{ me { id } } with a JWT or an API key reads nothing from the database after the first time", async () => {
  const { token, userId } = await server.signUp();
  const key = (await server.gql('mutation { createApiKey(name: "hot") { secret } }', {}, token)).data!
    .createApiKey.secret as string;
  for (const credential of [token, key]) {
    expect((await server.gql(ME, {}, credential)).data!.me.id).toBe(userId); // fills the caches
    const before = server.queries.length;
    for (let i = 0; i < 20; i++) expect((await server.gql(ME, {}, credential)).data!.me.id).toBe(userId);
    expect(server.queries.slice(before)).toEqual([]);
  }
});

test("a cached API key is refused on the very next request after it is revoked", async () => {
  const { token } = await server.signUp();
  const created = (
    await server.gql('mutation { createApiKey(name: "soon revoked") { secret apiKey { id } } }', {}, token)
  ).data!.createApiKey;
  expect((await server.gql(ME, {}, created.secret)).data!.me).not.toBeNull();
  const revoked = await server.gql(
    "mutation($id: ID!) { revokeApiKey(id: $id) { id } }",
    { id: created.apiKey.id },
    token,
  );
  expect(revoked.errors).toBeUndefined();
  const after = await server.gql(ME, {}, created.secret);
  expect(after.status).toBe(401);
  expect(codeOf(after)).toBe("UNAUTHENTICATED");
});

test("a cached JWT is refused on the very next request after signing out everywhere", async () => {
  const { token } = await server.signUp();
  expect((await server.gql(ME, {}, token)).data!.me).not.toBeNull();
  const out = await server.gql("mutation { signOutEverywhere { signedOutAt } }", {}, token);
  expect(out.errors).toBeUndefined();
  const after = await server.gql(ME, {}, token);
  expect(codeOf(after)).toBe("UNAUTHENTICATED");
});

test("an API key's lastUsedAt shows use at once although its write is batched", async () => {
  const { token } = await server.signUp();
  const created = (
    await server.gql('mutation { createApiKey(name: "used") { secret apiKey { id lastUsedAt } } }', {}, token)
  ).data!.createApiKey;
  expect(created.apiKey.lastUsedAt).toBeNull();
  await server.gql(ME, {}, created.secret);
  const listed = (await server.gql("{ me { apiKeys { id lastUsedAt } } }", {}, token)).data!.me.apiKeys;
  expect(listed.find((k: { id: string }) => k.id === created.apiKey.id).lastUsedAt).not.toBeNull();
});
