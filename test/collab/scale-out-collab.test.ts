// Collaboration rooms over several real server processes sharing one libSQL file and one Redis (a real
// redis-server through REDIS_URL, and the same through the fake Upstash REST server): stock
// y-websocket clients connected to different instances converge; an update another instance has
// relayed survives kill -9 of the instance that took it; compaction while two instances write loses
// nothing; a branch's file room used only on B reaches the workspace on A (the branch's owner) and
// what A writes reaches B's clients; an edit acknowledged on B is in a run started on A at once;
// COLLAB_MAX_SOCKETS_PER_USER counts a user's sockets on every instance (a killed instance's within
// the lease); presence of a client on A is listed and streamed on B, and goes when A is killed.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@libsql/client";
import { type ServerProcess, startServerProcess } from "../../scripts/lib/server-process.ts";
import { connectRoom, eventually, type RoomClient } from "../utils/collab.ts";
import { sharedEnv, useSharedBackends } from "../utils/shared-state.ts";
import { collect, wsClient } from "../utils/ws.ts";

const clients: RoomClient[] = [];
const shared = useSharedBackends(() => {
  for (const c of clients) c.provider.destroy();
});
const { skip } = shared;

const open = (server: { url: string }, room: string, token: string) => {
  const client = connectRoom(server.url, room, token);
  clients.push(client);
  return client;
};
const wsUrl = (server: { url: string }) => `${server.url.replace(/^http/, "ws")}/graphql`;

for (const kind of ["redis", "upstash"] as const) {
  describe.skipIf(skip)(`collaboration over two instances sharing ${kind}`, () => {
    const dir = mkdtempSync(join(tmpdir(), `occ-collab-scale-${kind}-`));
    const dbFile = join(dir, "shared.db");
    let env: Record<string, string>;
    let a: ServerProcess;
    let b: ServerProcess;
    let token: string;
    const spawned: ServerProcess[] = [];
    const spawn = async (extra: Record<string, string> = {}) => {
      const server = await startServerProcess({ ...env, ...extra });
      spawned.push(server);
      return server;
    };
    const newSession = async () =>
      (
        await a.gql(
          `mutation($f: JSON) { createSession(input: { title: "rooms", files: $f }) { id mainBranch { id } } }`,
          { f: { "notes.txt": "start" } },
          token,
        )
      ).createSession as { id: string; mainBranch: { id: string } };
    /** Rows the shared update log holds for a room. */
    const rowsOf = async (room: string) => {
      const db = createClient({ url: `file:${dbFile}` });
      try {
        const result = await db.execute({
          sql: "select count(*) as n from collab_updates where room = ?",
          args: [room],
        });
        return Number(result.rows[0]!.n);
      } finally {
        db.close();
      }
    };

    /** Runs `command` on the branch through `server`; its output once it ended. */
    const runOn = async (server: ServerProcess, branchId: string, command: string) => {
      const { id } = (
        await server.gql(
          `mutation($b: ID!, $c: String!) { exec(branchId: $b, command: $c) { id } }`,
          {
            b: branchId,
            c: command,
          },
          token,
        )
      ).exec;
      let run: { status: string; output: string } = { status: "QUEUED", output: "" };
      await eventually(async () => {
        run = (await server.gql(`query($r: ID!) { run(id: $r) { status output } }`, { r: id }, token)).run;
        return !["QUEUED", "RUNNING"].includes(run.status);
      }, 20_000);
      expect(run.status).toBe("SUCCEEDED");
      return run.output;
    };

    beforeAll(async () => {
      env = {
        NODE_ENV: "test",
        DATABASE_URL: `file:${dbFile}`,
        JWT_SECRET: `collab-scale-${crypto.randomUUID()}`,
        REDIS_KEY_PREFIX: `collab-${kind}:`,
        ...sharedEnv(kind, shared.redis, shared.upstash),
        // One snapshot store for all instances (one machine): any of them can take a branch over.
        SANDBOX_STORE_DIR: join(dir, "store"),
        COLLAB_UNLOAD_GRACE_MS: "200",
        COLLAB_FILE_FLUSH_MS: "100",
      };
      a = await spawn();
      b = await spawn();
      token = (
        await a.gql(
          `mutation { register(email: "rooms-${kind}@example.com", password: "password123") { token } }`,
        )
      ).register.token;
    });
    afterAll(async () => {
      for (const c of clients.splice(0)) c.provider.destroy();
      for (const server of spawned) await server.stop().catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    });

    test("clients on A and on B edit one room at once and converge; a late joiner on either sees it all", async () => {
      const { id } = await newSession();
      const room = `sessions/${id}/chat`;
      const onA = open(a, room, token);
      const onB = open(b, room, token);
      await Promise.all([onA.synced, onB.synced]);
      for (let i = 0; i < 20; i++) {
        onA.text.insert(onA.text.length, `a${i};`);
        onB.text.insert(onB.text.length, `b${i};`);
        await Bun.sleep(5);
      }
      const expected = (text: string) =>
        Array.from({ length: 20 }, (_, i) => [`a${i};`, `b${i};`]).every(
          ([x, y]) => text.includes(x!) && text.includes(y!),
        );
      await eventually(
        () => expected(onA.text.toString()) && onA.text.toString() === onB.text.toString(),
        10_000,
      );
      const late = open(b, room, token);
      await late.synced;
      await eventually(() => late.text.toString() === onA.text.toString());
    }, 60_000);

    test("kill -9 of an instance right after its client's update was relayed: the update is there after a reload", async () => {
      const c = await spawn();
      const { id } = await newSession();
      const room = `sessions/${id}/chat`;
      const writer = open(c, room, token);
      const watcher = open(b, room, token);
      await Promise.all([writer.synced, watcher.synced]);
      writer.text.insert(0, "acknowledged before the crash");
      // Relayed by B: stored by C first (an update is relayed only once it is in the log).
      await eventually(() => watcher.text.toString() === "acknowledged before the crash");
      c.proc.kill("SIGKILL");
      await c.proc.exited;
      writer.provider.destroy();
      watcher.provider.destroy();
      // B unloads the room (grace 200 ms) and loads it again from the log for a new client.
      await Bun.sleep(600);
      const reader = open(b, room, token);
      await reader.synced;
      await eventually(() => reader.text.toString() === "acknowledged before the crash");
    }, 60_000);

    test("compaction while both instances write loses nothing", async () => {
      const { id } = await newSession();
      const room = `sessions/${id}/chat`;
      const onA = open(a, room, token);
      const onB = open(b, room, token);
      await Promise.all([onA.synced, onB.synced]);
      // 2 x 150 commits of ~2 kB each: the log passes its compaction thresholds many times over, on both.
      const filler = "x".repeat(2000);
      const write = async (client: RoomClient, tag: string) => {
        for (let i = 0; i < 150; i++) {
          client.text.insert(client.text.length, `<${tag}${i}>${filler}`);
          await Bun.sleep(2);
        }
      };
      await Promise.all([write(onA, "a"), write(onB, "b")]);
      const all = (text: string) =>
        Array.from({ length: 150 }, (_, i) => [`<a${i}>`, `<b${i}>`]).every(
          ([x, y]) => text.includes(x!) && text.includes(y!),
        );
      await eventually(() => all(onA.text.toString()) && all(onB.text.toString()), 20_000);
      onA.provider.destroy();
      onB.provider.destroy();
      await Bun.sleep(600);
      // Compacted (300 commits, far fewer rows), and a fresh load from the log on each holds every write.
      expect(await rowsOf(room)).toBeLessThan(100);
      for (const server of [a, b]) {
        const reader = open(server, room, token);
        await reader.synced;
        await eventually(() => all(reader.text.toString()), 10_000);
        reader.provider.destroy();
      }
    }, 90_000);

    test("a branch's file room used only on B: edits reach the workspace on A (the owner); A's writes reach B", async () => {
      const session = await newSession();
      const branch = session.mainBranch.id;
      const room = `branches/${branch}/files/notes.txt`;
      // Opened once on A (the branch's owner: it made the session), so the room is stored; then closed.
      const first = open(a, room, token);
      await first.synced;
      await eventually(() => first.text.toString() === "start");
      first.provider.destroy();
      await Bun.sleep(600);
      const onB = open(b, room, token);
      await onB.synced;
      await eventually(() => onB.text.toString() === "start");
      onB.text.insert(5, " typed on B");
      const fileOnA = async () =>
        (
          await a.gql(
            `query($b: ID!) { branch(id: $b) { file(path: "notes.txt") { content } } }`,
            { b: branch },
            token,
          )
        ).branch.file?.content;
      await eventually(async () => (await fileOnA()) === "start typed on B", 15_000);
      await a.gql(
        `mutation($b: ID!) { writeFile(branchId: $b, path: "notes.txt", content: "start typed on B, then written on A") { id } }`,
        { b: branch },
        token,
      );
      await eventually(() => onB.text.toString() === "start typed on B, then written on A", 15_000);
    }, 60_000);

    test("an edit acknowledged on B is in a run started on A (the owner) at once", async () => {
      const session = await newSession();
      const branch = session.mainBranch.id;
      const room = `branches/${branch}/files/notes.txt`;
      for (let round = 0; round < 3; round++) {
        const writer = open(b, room, token);
        const watcher = open(b, room, token);
        await Promise.all([writer.synced, watcher.synced]);
        const before = `start${" edit".repeat(round)}`;
        await eventually(() => writer.text.toString() === before);
        writer.text.insert(writer.text.length, " edit");
        // Relayed to the other client on B: stored first (acknowledged).
        await eventually(() => watcher.text.toString() === `${before} edit`, 10_000);
        // The socket goes at once too: A may never hear that B served the room.
        writer.provider.destroy();
        watcher.provider.destroy();
        expect(await runOn(a, branch, "cat notes.txt")).toBe(`${before} edit`);
        await Bun.sleep(300); // the room unloads on B (grace 200 ms) before the next round opens it
      }
    }, 60_000);

    // BranchRuntime runs the `before` hook on a sandbox it has just created (a takeover) too.
    test("an edit stored while no instance holds the branch's sandbox is in the first run of the instance that takes it over", async () => {
      const owner = await spawn();
      const { mainBranch } = (
        await owner.gql(
          `mutation($f: JSON) { createSession(input: { title: "takeover", files: $f }) { mainBranch { id } } }`,
          { f: { "notes.txt": "start" } },
          token,
        )
      ).createSession as { mainBranch: { id: string } };
      const branch = mainBranch.id;
      const room = `branches/${branch}/files/notes.txt`;
      const writer = open(b, room, token);
      const watcher = open(b, room, token);
      await Promise.all([writer.synced, watcher.synced]);
      await eventually(() => writer.text.toString() === "start");
      // A graceful stop lets the branch go at once: nobody holds its sandbox now.
      await owner.stop();
      writer.text.insert(5, " while nobody held it");
      await eventually(() => watcher.text.toString() === "start while nobody held it", 10_000);
      writer.provider.destroy();
      watcher.provider.destroy();
      expect(await runOn(b, branch, "cat notes.txt")).toBe("start while nobody held it");
    }, 60_000);

    test("COLLAB_MAX_SOCKETS_PER_USER counts a user's sockets on every instance (4429); a killed instance's go within the lease", async () => {
      const limited = { COLLAB_MAX_SOCKETS_PER_USER: "3" };
      const c = await spawn(limited);
      const d = await spawn(limited);
      const user = (
        await c.gql(
          `mutation { register(email: "sockets-${kind}@example.com", password: "password123") { token } }`,
        )
      ).register.token as string;
      const { id } = (await c.gql(`mutation { createSession(input: { title: "sockets" }) { id } }`, {}, user))
        .createSession;
      const room = `sessions/${id}/chat`;
      const onC = [open(c, room, user), open(c, room, user)];
      const onD = open(d, room, user);
      await Promise.all([...onC, onD].map((client) => client.synced));
      // The fourth, on either instance, is refused.
      for (const server of [d, c]) {
        const extra = open(server, room, user);
        expect((await extra.closed).code).toBe(4429);
        extra.provider.destroy();
      }
      // One given back on C makes room on D.
      onC[0]!.provider.destroy();
      await Bun.sleep(200);
      const again = open(d, room, user);
      await again.synced;
      const refused = open(d, room, user);
      expect((await refused.closed).code).toBe(4429);
      refused.provider.destroy();
      // C dies holding one: its lease is not renewed, and within the lease (30 s) D takes a new one.
      c.proc.kill("SIGKILL");
      await c.proc.exited;
      onC[1]!.provider.destroy();
      await eventually(async () => {
        const next = open(d, room, user);
        const outcome = await Promise.race([
          next.synced.then(() => "open"),
          next.closed.then(() => "refused"),
        ]);
        if (outcome !== "open") next.provider.destroy();
        return outcome === "open";
      }, 45_000);
    }, 90_000);

    test("presence of a client on A is listed and streamed on B, and is gone after A is killed", async () => {
      const c = await spawn();
      const { id } = await newSession();
      const room = `sessions/${id}/chat`;
      const stream = collect(
        wsClient(wsUrl(b), token),
        `subscription($s: ID!) { presence(sessionId: $s) { kind entry { key name } } }`,
        { s: id },
      );
      await Bun.sleep(300); // the subscription is live
      const onC = open(c, room, token);
      await onC.synced;
      onC.provider.awareness.setLocalStateField("user", { name: "on C", color: "#30bced" });
      const listed = async () =>
        (
          (await b.gql(`query($s: ID!) { session(id: $s) { presence { key name } } }`, { s: id }, token))
            .session.presence as { name: string }[]
        ).map((p) => p.name);
      await eventually(async () => (await listed()).includes("on C"), 10_000);
      await stream.until(
        (r) => r.data?.presence.kind === "JOIN" && r.data.presence.entry.name === "on C",
        10_000,
      );
      c.proc.kill("SIGKILL");
      await c.proc.exited;
      onC.provider.destroy();
      await eventually(async () => !(await listed()).includes("on C"), 30_000);
      await stream.until(
        (r) => r.data?.presence.kind === "LEAVE" && r.data.presence.entry.name === "on C",
        10_000,
      );
      stream.dispose();
    }, 60_000);
  });
}
