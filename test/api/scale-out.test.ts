// Two real server processes (A and B) sharing one libSQL file, one JWT secret and one Redis, for each
// shared-state backend: a real redis-server (REDIS_URL), and the same through the fake Upstash REST
// server (UPSTASH_REDIS_REST_URL/_TOKEN). A client talking to both sees one platform: events, run
// output, presence, account events and revocations cross; limits and quotas are counted once; a
// subscription resumes after dropped Redis connections and after an instance is killed, with no gap
// and no repeat.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type ServerProcess, startServerProcess } from "../../scripts/lib/server-process.ts";
import { type GraphqlReply, postGraphql } from "../utils/graphql-http.ts";
import { sharedEnv, useSharedBackends } from "../utils/shared-state.ts";
import { collect, wsClient } from "../utils/ws.ts";

const shared = useSharedBackends();
const { skip } = shared;

const gql = (server: { url: string }, query: string, variables = {}, token?: string) =>
  postGraphql(server.url, query, variables, token);

async function ok(server: { url: string }, query: string, variables = {}, token?: string) {
  const reply = await gql(server, query, variables, token);
  if (reply.errors) throw new Error(`${query.slice(0, 60)}: ${JSON.stringify(reply.errors)}`);
  return reply.data;
}

let users = 0;
async function signUp(server: { url: string }) {
  const email = `scale${++users}-${crypto.randomUUID().slice(0, 6)}@example.com`;
  const data = await ok(
    server,
    `mutation($e: String!) { register(email: $e, password: "password123") { token user { id } } }`,
    { e: email },
  );
  return { email, token: data.register.token as string, userId: data.register.user.id as string };
}

const wsUrl = (server: { url: string }) => `${server.url.replace(/^http/, "ws")}/graphql`;

async function newSession(server: { url: string }, token: string) {
  return (
    await ok(
      server,
      `mutation { createSession(input: { title: "scale", files: { a_txt: "a" } }) { id eventCursor mainBranch { id head { id } } } }`,
      {},
      token,
    )
  ).createSession as { id: string; eventCursor: string; mainBranch: { id: string; head: { id: string } } };
}

const write = (server: { url: string }, token: string, branchId: string, content: string) =>
  ok(
    server,
    `mutation($b: ID!, $c: String!) { writeFile(branchId: $b, path: "w.txt", content: $c) { id } }`,
    { b: branchId, c: content },
    token,
  );

const SESSION_EVENTS = `subscription($s: ID!, $after: String) { sessionEvents(sessionId: $s, after: $after) { kind cursor } }`;

for (const kind of ["redis", "upstash"] as const) {
  describe.skipIf(skip)(`two instances sharing ${kind}`, () => {
    const dir = mkdtempSync(join(tmpdir(), `occ-scale-${kind}-`));
    let env: Record<string, string>;
    let a: ServerProcess;
    let b: ServerProcess;
    const spawned: ServerProcess[] = [];
    const spawn = async () => {
      const server = await startServerProcess(env);
      spawned.push(server);
      return server;
    };

    beforeAll(async () => {
      env = {
        NODE_ENV: "test",
        DATABASE_URL: `file:${join(dir, "shared.db")}`,
        JWT_SECRET: `scale-out-secret-${crypto.randomUUID()}`,
        REDIS_KEY_PREFIX: `${kind}:`,
        ...sharedEnv(kind, shared.redis, shared.upstash),
        AUTH_RATE_LIMIT_PER_MINUTE: "10",
        REQUESTS_PER_MINUTE_PER_USER: "60",
        REQUESTS_PER_MINUTE_PER_API_KEY: "10",
        QUOTA_USER_CONCURRENT_RUNS: "1",
        QUOTA_USER_RUN_SECONDS_PER_DAY: "3",
      };
      // One after the other: both apply the (same) migrations to the shared database at start.
      a = await spawn();
      b = await spawn();
    });
    afterAll(async () => {
      for (const server of spawned) await server.stop().catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    });

    test("a token from A works on B, and B's sessionEvents sees A's mutations in order", async () => {
      const me = await signUp(a);
      expect((await ok(b, "{ me { id } }", {}, me.token)).me.id).toBe(me.userId);
      const healthz = (await (await fetch(`${b.url}/healthz`)).json()) as Record<string, any>;
      expect(healthz.sharedStore).toEqual({ kind, ok: true });
      const session = await newSession(a, me.token);
      const onB = collect(wsClient(wsUrl(b), me.token), SESSION_EVENTS, {
        s: session.id,
        after: session.eventCursor,
      });
      await ok(
        a,
        `mutation($s: ID!) { fork(snapshotId: $s, name: "other") { id } }`,
        { s: session.mainBranch.head.id },
        me.token,
      );
      await write(a, me.token, session.mainBranch.id, "one");
      const last = (
        await ok(a, `query($s: ID!) { session(id: $s) { eventCursor } }`, { s: session.id }, me.token)
      ).session.eventCursor;
      await onB.until((r) => r.data?.sessionEvents.cursor === last);
      // The same events, in the same order, as A's own subscription from the same cursor.
      const onA = collect(wsClient(wsUrl(a), me.token), SESSION_EVENTS, {
        s: session.id,
        after: session.eventCursor,
      });
      await onA.until((r) => r.data?.sessionEvents.cursor === last);
      const seen = (c: typeof onA) =>
        c.results.map((r) => `${r.data.sessionEvents.kind}@${r.data.sessionEvents.cursor}`);
      expect(seen(onB)).toEqual(seen(onA));
      expect(seen(onB).some((e) => e.startsWith("BRANCH_CREATED"))).toBe(true);
      expect(seen(onB).some((e) => e.startsWith("SNAPSHOT_ADDED"))).toBe(true);
      onA.dispose();
      onB.dispose();
    });

    test("B streams the output of a run started on A, each chunk once, to its end", async () => {
      const me = await signUp(a);
      const session = await newSession(a, me.token);
      const run = (
        await ok(
          a,
          `mutation($b: ID!) { exec(branchId: $b, command: "for i in 1 2 3 4 5; do echo line$i; sleep 0.15; done") { id } }`,
          { b: session.mainBranch.id },
          me.token,
        )
      ).exec;
      const output = collect(
        wsClient(wsUrl(b), me.token),
        `subscription($r: ID!) { runOutput(runId: $r) { __typename ... on RunOutputChunk { seq text } ... on RunFinished { seq status } } }`,
        { r: run.id },
      );
      const end = await output.until((r) => r.data?.runOutput.__typename === "RunFinished");
      expect(end.data.runOutput.status).toBe("SUCCEEDED");
      const events = output.results.map((r) => r.data.runOutput);
      const seqs = events.map((e) => e.seq);
      expect(seqs).toEqual([...seqs].sort((x, y) => x - y));
      expect(new Set(seqs).size).toBe(seqs.length);
      const text = events.map((e) => e.text ?? "").join("");
      expect(text).toBe("line1\nline2\nline3\nline4\nline5\n");
      output.dispose();
    });

    test("presence of a client on A reaches a subscriber on B", async () => {
      const me = await signUp(a);
      const session = await newSession(a, me.token);
      const onB = collect(
        wsClient(wsUrl(b), me.token),
        `subscription($s: ID!) { presence(sessionId: $s) { kind entry { key file user { id } } } }`,
        { s: session.id },
      );
      // Announcements repeat (as clients renew them) until B's subscription, started meanwhile, hears one.
      let heard = false;
      for (let i = 0; i < 20 && !heard; i++) {
        await ok(
          a,
          `mutation($s: ID!) { announcePresence(sessionId: $s, file: "w.txt") { key } }`,
          { s: session.id },
          me.token,
        );
        heard = await onB
          .until((r) => r.data?.presence.entry.user?.id === me.userId, 500)
          .then(
            () => true,
            () => false,
          );
      }
      expect(heard).toBe(true);
      expect(onB.results.at(-1)!.data.presence.entry.file).toBe("w.txt");
      onB.dispose();
    });

    test("account events cross, and a key revoked or a sign-out on A is refused on B at once", async () => {
      const me = await signUp(a);
      const events = collect(
        wsClient(wsUrl(b), me.token),
        `subscription { accountEvents { kind apiKey { name } } }`,
      );
      let key = "";
      let keyId = "";
      for (let i = 0; i < 10; i++) {
        const created = (
          await ok(
            a,
            `mutation($n: String!) { createApiKey(name: $n) { secret apiKey { id } } }`,
            { n: `k${i}` },
            me.token,
          )
        ).createApiKey;
        key = created.secret;
        keyId = created.apiKey.id;
        const got = await events
          .until((r) => r.data?.accountEvents.apiKey?.name === `k${i}`, 500)
          .then(
            () => true,
            () => false,
          );
        if (got) break;
      }
      expect(events.results.some((r) => r.data.accountEvents.kind === "API_KEY_CREATED")).toBe(true);

      // B has the key and the JWT in its principal cache now.
      expect((await gql(b, "{ me { id } }", {}, key)).data.me.id).toBe(me.userId);
      expect((await gql(b, "{ me { id } }", {}, me.token)).data.me.id).toBe(me.userId);
      await ok(a, `mutation($id: ID!) { revokeApiKey(id: $id) { revokedAt } }`, { id: keyId }, me.token);
      const refused = await gql(b, "{ me { id } }", {}, key);
      expect(refused.status).toBe(401);
      expect(refused.errors?.[0]?.extensions?.code).toBe("UNAUTHENTICATED");

      const fresh = (await ok(a, `mutation { signOutEverywhere { token } }`, {}, me.token)).signOutEverywhere
        .token;
      expect((await gql(b, "{ me { id } }", {}, me.token)).status).toBe(401);
      expect((await gql(b, "{ me { id } }", {}, fresh)).data.me.id).toBe(me.userId);
      events.dispose();
    });

    test("16 failed logins for one email split over A and B hit the limit of 10 per minute", async () => {
      const me = await signUp(a);
      const codes: string[] = [];
      let retryAfter = 0;
      for (let i = 0; i < 16; i++) {
        const reply = await gql(
          i % 2 === 0 ? a : b,
          `mutation($e: String!) { login(email: $e, password: "wrong-password") { token } }`,
          {
            e: me.email,
          },
        );
        const error = reply.errors?.[0]?.extensions;
        codes.push(error?.code);
        if (error?.code === "RATE_LIMITED") retryAfter = error.retryAfterSeconds;
      }
      expect(codes.slice(0, 10).every((code) => code === "UNAUTHENTICATED")).toBe(true);
      expect(codes.slice(10)).toEqual(Array(6).fill("RATE_LIMITED"));
      expect(retryAfter).toBeGreaterThan(0);
      expect(retryAfter).toBeLessThanOrEqual(60);
    });

    test("request limits per user and per API key count over both instances (429 with Retry-After)", async () => {
      const me = await signUp(a);
      const key = (await ok(a, `mutation { createApiKey(name: "limited") { secret } }`, {}, me.token))
        .createApiKey.secret;
      // Per key: 10 a minute over A and B together (the user has used 2 of their 60 so far).
      const byKey: number[] = [];
      for (let i = 0; i < 13; i++) byKey.push((await gql(i % 2 ? a : b, "{ me { id } }", {}, key)).status);
      expect(byKey.slice(0, 10)).toEqual(Array(10).fill(200));
      expect(byKey.slice(10)).toEqual([429, 429, 429]);
      const limited = await gql(a, "{ me { id } }", {}, key);
      expect(limited.errors?.[0]?.extensions?.code).toBe("RATE_LIMITED");
      expect(limited.errors?.[0]?.extensions?.retryAfterSeconds).toBeGreaterThan(0);
      expect(Number(limited.headers.get("retry-after"))).toBeGreaterThan(0);
      // Per user: 60 a minute, whatever the credential; the key's 14 requests counted too.
      const byUser: number[] = [];
      for (let i = 0; i < 50; i++)
        byUser.push((await gql(i % 2 ? a : b, "{ me { id } }", {}, me.token)).status);
      const first429 = byUser.indexOf(429);
      expect(first429).toBeGreaterThan(30);
      expect(first429).toBeLessThan(50);
      expect(byUser.slice(first429).every((s) => s === 429)).toBe(true);
    });

    test("run quotas count over both instances: runs at once, then run-seconds per day", async () => {
      const me = await signUp(a);
      const session = await newSession(a, me.token);
      const exec = (server: ServerProcess, command: string) =>
        gql(
          server,
          `mutation($b: ID!, $c: String!) { exec(branchId: $b, command: $c) { id } }`,
          {
            b: session.mainBranch.id,
            c: command,
          },
          me.token,
        );
      // A long command: it may last only the 3 run-seconds the user has today.
      const long = await exec(a, "sleep 30");
      expect(long.errors).toBeUndefined();
      const second = await exec(b, "echo second");
      expect(second.errors?.[0]?.extensions).toMatchObject({
        code: "QUOTA_EXCEEDED",
        scope: "concurrentRuns",
      });
      expect(second.errors?.[0]?.extensions?.retryAfterSeconds).toBeGreaterThan(0);
      let status = "RUNNING";
      for (let i = 0; i < 200 && (status === "RUNNING" || status === "QUEUED"); i++) {
        await Bun.sleep(100);
        status = (
          await ok(b, `query($r: ID!) { run(id: $r) { status } }`, { r: long.data.exec.id }, me.token)
        ).run.status;
      }
      expect(status).not.toBe("RUNNING");
      // Its seconds are counted as it ends (just after its row): then the day's quota is used up.
      let third: GraphqlReply | undefined;
      for (let i = 0; i < 20; i++) {
        third = await exec(b, "echo third");
        if (third.errors?.[0]?.extensions?.scope === "runSeconds") break;
        await Bun.sleep(100);
      }
      expect(third!.errors?.[0]?.extensions).toMatchObject({ code: "QUOTA_EXCEEDED", scope: "runSeconds" });
      const retry = third!.errors![0]!.extensions!.retryAfterSeconds;
      expect(retry).toBeGreaterThan(0);
      expect(retry).toBeLessThanOrEqual(24 * 3600);
    });

    test("sessionEvents resume across dropped Redis connections and a killed instance, no gap, no repeat", async () => {
      const me = await signUp(a);
      const session = await newSession(a, me.token);
      const branch = session.mainBranch.id;
      const onB = collect(wsClient(wsUrl(b), me.token), SESSION_EVENTS, {
        s: session.id,
        after: session.eventCursor,
      });
      for (const n of [1, 2]) await write(a, me.token, branch, `before-kill-${n}`);
      // Every Redis connection of both instances (and of the fake Upstash) is cut.
      await shared.redis.cli("CLIENT", "KILL", "TYPE", "normal");
      if (kind === "upstash") shared.upstash.dropSubscriptions();
      for (const n of [3, 4]) await write(a, me.token, branch, `after-kill-${n}`);
      const cursorOf = async () =>
        (await ok(a, `query($s: ID!) { session(id: $s) { eventCursor } }`, { s: session.id }, me.token))
          .session.eventCursor as string;
      let last = await cursorOf();
      await onB.until((r) => r.data?.sessionEvents.cursor === last);
      const seenOnB = onB.results.map((r) => r.data.sessionEvents.cursor as string);
      onB.dispose();

      // B dies (kill -9); A goes on; a new instance resumes after the last cursor B's client saw.
      b.proc.kill("SIGKILL");
      await b.proc.exited;
      for (const n of [5, 6]) await write(a, me.token, branch, `while-down-${n}`);
      b = await spawn();
      last = await cursorOf();
      const resumed = collect(wsClient(wsUrl(b), me.token), SESSION_EVENTS, {
        s: session.id,
        after: seenOnB.at(-1),
      });
      await resumed.until((r) => r.data?.sessionEvents.cursor === last);
      const all = [...seenOnB, ...resumed.results.map((r) => r.data.sessionEvents.cursor as string)];

      const reference = collect(wsClient(wsUrl(a), me.token), SESSION_EVENTS, {
        s: session.id,
        after: session.eventCursor,
      });
      await reference.until((r) => r.data?.sessionEvents.cursor === last);
      expect(all).toEqual(reference.results.map((r) => r.data.sessionEvents.cursor));
      expect(all.length).toBeGreaterThanOrEqual(6);
      resumed.dispose();
      reference.dispose();
    });
  });
}
