// People and a shared session to test access with: an owner, an editor, a viewer and a stranger
// (signed-up users), and a session shared with them holding a branch, a fork, a snapshot and a
// finished run. Used by the authorization tests and the security suite.
import { join } from "node:path";
import { newId } from "../../db/ids.ts";
import type { TestServer } from "./server.ts";

export type Person = "owner" | "editor" | "viewer" | "stranger";

export interface Account {
  token: string;
  email: string;
  userId: string;
}

export type Accounts = Record<Person, Account>;

export interface SessionFixture {
  sessionId: string;
  /** The main branch. */
  branchId: string;
  /** A second branch (forked from the root), safe to delete or promote. */
  otherBranchId: string;
  /** The root snapshot. */
  snapshotId: string;
  /** A finished run on the main branch. */
  runId: string;
}

/** Signs up one account per person (emails say who is who, for readable failures). */
export async function signUpAccounts<P extends string = Person>(
  server: TestServer,
  people: readonly P[] = ["owner", "editor", "viewer", "stranger"] as unknown as P[],
): Promise<Record<P, Account>> {
  const out = {} as Record<P, Account>;
  for (const person of people) {
    out[person] = await server.signUp(`${person}-${crypto.randomUUID().slice(0, 8)}@example.com`);
  }
  return out;
}

/** GraphQL as `token`; throws with the errors when there are any. */
export async function gqlOk(
  server: TestServer,
  token: string,
  query: string,
  variables: Record<string, unknown> = {},
): Promise<Record<string, any>> {
  const res = await server.gql(query, variables, token);
  if (res.errors) throw new Error(`${query.slice(0, 80)}: ${JSON.stringify(res.errors)}`);
  return res.data!;
}

/** Waits until a run is neither queued nor running (up to ~20 s). */
export async function waitForRun(server: TestServer, token: string, runId: string): Promise<string> {
  let status = "QUEUED";
  for (let i = 0; i < 1000 && (status === "QUEUED" || status === "RUNNING"); i++) {
    if (i > 0) await Bun.sleep(20);
    status = (await gqlOk(server, token, "query($r: ID!) { run(id: $r) { status } }", { r: runId })).run
      .status;
  }
  return status;
}

/** A fresh session of the owner's, shared with the editor (EDITOR) and the viewer (VIEWER). */
export async function sessionFixture(
  server: TestServer,
  people: Pick<Accounts, "owner" | "editor" | "viewer">,
): Promise<SessionFixture> {
  const owner = people.owner.token;
  const s = (
    await gqlOk(
      server,
      owner,
      `mutation($files: JSON) { createSession(input: { title: "fixture", files: $files }) { id mainBranch { id head { id } } } }`,
      { files: { "f.txt": "hello\n" } },
    )
  ).createSession;
  for (const [person, role] of [
    ["editor", "EDITOR"],
    ["viewer", "VIEWER"],
  ] as const) {
    await gqlOk(
      server,
      owner,
      "mutation($s: ID!, $e: String!, $r: Role!) { shareSession(sessionId: $s, email: $e, role: $r) { role } }",
      { s: s.id, e: people[person].email, r: role },
    );
  }
  const run = (
    await gqlOk(
      server,
      owner,
      `mutation($b: ID!) { exec(branchId: $b, command: "echo hi > g.txt") { id } }`,
      {
        b: s.mainBranch.id,
      },
    )
  ).exec;
  await waitForRun(server, owner, run.id);
  const other = (
    await gqlOk(server, owner, `mutation($s: ID!) { fork(snapshotId: $s, name: "other") { id } }`, {
      s: s.mainBranch.head.id,
    })
  ).fork;
  return {
    sessionId: s.id,
    branchId: s.mainBranch.id,
    otherBranchId: other.id,
    snapshotId: s.mainBranch.head.id,
    runId: run.id,
  };
}

/**
 * A finished exploration row in the session, written straight into the server's database: starting a
 * real one needs a model and agent runs, and the tests that use this only read it.
 */
export async function explorationFixture(
  server: TestServer,
  f: SessionFixture,
  userId: string,
): Promise<string> {
  const { createClient } = await import("@libsql/client");
  const client = createClient({ url: `file:${join(server.dataDir, "opencode-cloud.db")}` });
  const id = newId("exp");
  try {
    await client.execute("PRAGMA busy_timeout = 5000");
    await client.execute({
      sql: `INSERT INTO explorations (id, session_id, user_id, from_snapshot_id, status, prompts, samples,
              score_command, depth, parallelism, promote, created_at, finished_at)
            VALUES (?, ?, ?, ?, 'SUCCEEDED', '["try"]', 1, 'true', 1, 1, 0, ?, ?)`,
      args: [id, f.sessionId, userId, f.snapshotId, Date.now(), Date.now()],
    });
  } finally {
    client.close();
  }
  return id;
}
