// A signed-up user driving runs through GraphQL, for the quota tests (quota and quota-bypass).
import type { TestServer } from "./server.ts";

export type Gql = (query: string, variables?: Record<string, unknown>) => Promise<any>;

/** A signed-up user's GraphQL: `ok` throws on errors, `raw` returns the whole response. */
export async function userOf(server: TestServer) {
  const { token, userId } = await server.signUp();
  const raw = (query: string, variables: Record<string, unknown> = {}) => server.gql(query, variables, token);
  const ok: Gql = async (query, variables = {}) => {
    const res = await raw(query, variables);
    if (res.errors) throw new Error(JSON.stringify(res.errors));
    return res.data!;
  };
  return { token, userId, raw, ok };
}

export async function newSession(ok: Gql, files: Record<string, string> = {}, title = "quota") {
  return (
    await ok(
      `mutation($f: JSON, $t: String!) { createSession(input: { title: $t, files: $f }) { id mainBranch { id head { id } } } }`,
      { f: files, t: title },
    )
  ).createSession as { id: string; mainBranch: { id: string; head: { id: string } } };
}

/** Runs `command` on the branch and waits (polling every 50 ms, `maxPolls` times) for its end. */
export async function run(ok: Gql, branchId: string, command: string, maxPolls = 2400) {
  const { exec } = await ok(`mutation($b: ID!, $c: String!) { exec(branchId: $b, command: $c) { id } }`, {
    b: branchId,
    c: command,
  });
  for (let i = 0; i < maxPolls; i++) {
    const { run } = await ok(
      `query($r: ID!) { run(id: $r) { status exitCode killedBy errorCode error output snapshot { id addedBytes } } }`,
      { r: exec.id },
    );
    if (!["QUEUED", "RUNNING"].includes(run.status)) return run;
    await Bun.sleep(50);
  }
  throw new Error("run did not finish");
}

export const errorOf = (res: { errors?: { extensions?: Record<string, unknown> }[] }) =>
  res.errors?.[0]?.extensions;
