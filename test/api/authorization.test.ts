// Access details beyond the generated matrix (test/security/authorization-matrix.test.ts, which runs
// every query, mutation and subscription as every kind of caller): a stranger's NOT_FOUND reads exactly
// like a missing id's, and share links grant their role, never lower one, and cannot be forged.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { startTestServer, type TestServer } from "../utils/server.ts";
import {
  type Accounts,
  type SessionFixture,
  sessionFixture,
  signUpAccounts,
} from "../utils/session-fixture.ts";

type Actor = keyof Accounts | "anonymous";

let server: TestServer;
let people: Accounts;

async function as(actor: Actor, query: string, variables: Record<string, unknown> = {}) {
  return server.gql(query, variables, actor === "anonymous" ? undefined : people[actor].token);
}

async function ok(query: string, variables: Record<string, unknown> = {}) {
  const res = await as("owner", query, variables);
  if (res.errors) throw new Error(JSON.stringify(res.errors));
  return res.data!;
}

const fixture = (): Promise<SessionFixture> => sessionFixture(server, people);

beforeAll(async () => {
  server = await startTestServer();
  people = await signUpAccounts(server);
});
afterAll(() => server.close());

describe("not found and share links", () => {
  test("a stranger's NOT_FOUND is word for word a missing id's", async () => {
    const f = await fixture();
    const foreign = await as("stranger", "query($b: ID!) { branch(id: $b) { id } }", { b: f.branchId });
    const missing = await as("stranger", "query($b: ID!) { branch(id: $b) { id } }", {
      b: "br_000000000000000000000000zz",
    });
    expect(foreign.errors![0]!.message).toBe(missing.errors![0]!.message);
    // (The shareSession case above made "stranger" a member somewhere, so list as a brand-new user.)
    const fresh = await server.signUp();
    const list = await server.gql("{ sessions { edges { node { id } } } }", {}, fresh.token);
    expect(list.data!.sessions.edges).toEqual([]);
    expect(
      (await as("anonymous", "{ sessions { edges { node { id } } } }")).errors![0]!.extensions!.code,
    ).toBe("UNAUTHENTICATED");
  });

  test("joinSession with a share link grants its role; a forged or expired link is refused", async () => {
    const f = await fixture();
    const link = (
      await ok(
        `mutation($s: ID!) { createShareLink(sessionId: $s, role: EDITOR, expiresInSeconds: 600) { token url role } }`,
        { s: f.sessionId },
      )
    ).createShareLink;
    expect(link.url).toContain("joinSession");
    expect(
      (await as("anonymous", "mutation($t: String!) { joinSession(token: $t) { id } }", { t: link.token }))
        .errors![0]!.extensions!.code,
    ).toBe("UNAUTHENTICATED");
    const joined = await as(
      "stranger",
      "mutation($t: String!) { joinSession(token: $t) { id viewerRole } }",
      { t: link.token },
    );
    expect(joined.data!.joinSession.viewerRole).toBe("EDITOR");
    // Now an editor: exec is allowed, promote is not.
    expect(
      (
        await as("stranger", `mutation($b: ID!) { exec(branchId: $b, command: "true") { id } }`, {
          b: f.branchId,
        })
      ).errors,
    ).toBeUndefined();
    expect(
      (await as("stranger", "mutation($b: ID!) { promote(branchId: $b) { id } }", { b: f.branchId }))
        .errors![0]!.extensions!.code,
    ).toBe("FORBIDDEN");
    // A link cannot lower the role of someone who has more.
    await as("owner", "mutation($t: String!) { joinSession(token: $t) { id } }", { t: link.token });
    expect(
      (await ok("query($s: ID!) { session(id: $s) { viewerRole } }", { s: f.sessionId })).session.viewerRole,
    ).toBe("OWNER");
    // Tampered tokens are refused.
    const forged = `${link.token.slice(0, -3)}abc`;
    expect(
      (await as("viewer", "mutation($t: String!) { joinSession(token: $t) { id } }", { t: forged }))
        .errors![0]!.extensions!.code,
    ).toBe("BAD_USER_INPUT");
    // An access token is not a share link (different audience).
    expect(
      (
        await as("viewer", "mutation($t: String!) { joinSession(token: $t) { id } }", {
          t: people.owner.token,
        })
      ).errors![0]!.extensions!.code,
    ).toBe("BAD_USER_INPUT");
  });
});
