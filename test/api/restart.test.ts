// kill -9 during a running exec, then a restart on the same data: every session, snapshot and
// completed run is still there; the interrupted run says so; the branch works again from its head.
import { expect, test } from "bun:test";
import { rmSync } from "node:fs";
import { spawnServer } from "../utils/process.ts";

async function gql(
  url: string,
  token: string | undefined,
  query: string,
  variables: Record<string, unknown> = {},
) {
  const res = await fetch(`${url}/graphql`, {
    method: "POST",
    headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify({ query, variables }),
  });
  const body = (await res.json()) as { data?: any; errors?: unknown[] };
  if (body.errors) throw new Error(JSON.stringify(body.errors));
  return body.data;
}

async function waitFor<T>(fn: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    const value = await fn();
    if (value !== undefined) return value;
    await Bun.sleep(50);
  }
  throw new Error("timed out");
}

test("kill -9 mid-run, restart: nothing completed is lost and the interrupted run says so", async () => {
  const first = await spawnServer();
  const { token } = (
    await gql(
      first.url,
      undefined,
      `mutation { register(email: "k@example.com", password: "password123") { token } }`,
    )
  ).register;
  const s = (
    await gql(
      first.url,
      token,
      `mutation { createSession(input: { title: "crash" }) { id mainBranch { id } } }`,
    )
  ).createSession;
  const branch = s.mainBranch.id;

  const done = (
    await gql(
      first.url,
      token,
      `mutation($b: ID!) { exec(branchId: $b, command: "echo kept > kept.txt") { id } }`,
      { b: branch },
    )
  ).exec;
  const finished = await waitFor(async () => {
    const run = (
      await gql(first.url, token, `query($r: ID!) { run(id: $r) { status snapshot { id } } }`, { r: done.id })
    ).run;
    return run.status === "SUCCEEDED" ? run : undefined;
  });
  const checkpoint = (
    await gql(
      first.url,
      token,
      `mutation($b: ID!) { checkpoint(branchId: $b, label: "before crash") { id } }`,
      { b: branch },
    )
  ).checkpoint;

  const long = (
    await gql(
      first.url,
      token,
      `mutation($b: ID!) { exec(branchId: $b, command: "echo started; sleep 30") { id } }`,
      { b: branch },
    )
  ).exec;
  await waitFor(async () => {
    const run = (
      await gql(first.url, token, `query($r: ID!) { run(id: $r) { status output } }`, { r: long.id })
    ).run;
    return run.status === "RUNNING" && run.output.includes("started") ? run : undefined;
  });
  first.proc.kill("SIGKILL");
  await first.proc.exited;

  const second = await spawnServer({}, first.dataDir);
  try {
    const after = await gql(
      second.url,
      token,
      `query($s: ID!, $done: ID!, $long: ID!) {
          session(id: $s) { snapshots { nodes { id label } } mainBranch { head { id } } }
          done: run(id: $done) { status snapshot { id } }
          long: run(id: $long) { status output error finishedAt }
        }`,
      { s: s.id, done: done.id, long: long.id },
    );
    expect(after.done).toEqual({ status: "SUCCEEDED", snapshot: { id: finished.snapshot.id } });
    expect(after.long.status).toBe("INTERRUPTED");
    expect(after.long.output).toContain("started"); // flushed while it ran
    expect(after.long.error).toContain("stopped");
    expect(after.long.finishedAt).not.toBeNull();
    const ids = after.session.snapshots.nodes.map((n: { id: string }) => n.id);
    expect(ids).toContain(finished.snapshot.id);
    expect(ids).toContain(checkpoint.id);
    expect(after.session.mainBranch.head.id).toBe(checkpoint.id);

    // The branch's workspace comes back from its head on next use.
    const again = (
      await gql(
        second.url,
        token,
        `mutation($b: ID!) { exec(branchId: $b, command: "cat kept.txt") { id } }`,
        { b: branch },
      )
    ).exec;
    const run = await waitFor(async () => {
      const r = (
        await gql(second.url, token, `query($r: ID!) { run(id: $r) { status output } }`, { r: again.id })
      ).run;
      return r.status === "SUCCEEDED" ? r : undefined;
    });
    expect(run.output).toBe("kept\n");
  } finally {
    second.proc.kill("SIGTERM");
    await second.proc.exited;
    rmSync(first.dataDir, { recursive: true, force: true });
  }
}, 60_000);
