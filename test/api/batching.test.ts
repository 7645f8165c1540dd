// N+1 safety: listing sessions with their branches, heads, owners and members costs the same number
// of SQL statements for 2 sessions as for 12 (dataloader batches each kind into one query).
import { afterAll, beforeAll, expect, test } from "bun:test";
import { startTestServer, type TestServer } from "../utils/server.ts";

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(() => server.close());

const LIST = `{ sessions(first: 50) { nodes { id owner { email } mainBranch { name head { id parent { id } } }
  branches { name status head { id children { id } } } members { role user { email } } rootSnapshot { fileCount } } } }`;

async function statementsFor(token: string): Promise<number> {
  const before = server.queries.length;
  const res = await server.gql(LIST, {}, token);
  expect(res.errors).toBeUndefined();
  return server.queries.length - before;
}

async function userWithSessions(n: number) {
  const { token } = await server.signUp();
  for (let i = 0; i < n; i++) {
    const s = (
      await server.gql(
        `mutation { createSession(input: { title: "s" }) { mainBranch { head { id } } } }`,
        {},
        token,
      )
    ).data!;
    await server.gql(
      `mutation($s: ID!) { fork(snapshotId: $s) { id } }`,
      { s: s.createSession.mainBranch.head.id },
      token,
    );
  }
  return token;
}

test("listing 12 sessions with nested objects costs as many statements as listing 2", async () => {
  const few = await statementsFor(await userWithSessions(2));
  const many = await statementsFor(await userWithSessions(12));
  expect(many).toBe(few);
  expect(few).toBeLessThan(15);
});
