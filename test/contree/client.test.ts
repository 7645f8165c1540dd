// The ConTree client against the fake ConTree server (scripts/fake-contree): each of the 24
// operations, the helpers (ensureFile, resolveImage, run, startInstance), typed errors, and the
// retry/resume contract under injected faults. Assertions count requests, never wall time.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import {
  ContreeAbortedError,
  ContreeBadRequestError,
  ContreeClient,
  type ContreeClientOptions,
  ContreeConflictError,
  type ContreeError,
  ContreeNotFoundError,
  ContreePermissionDeniedError,
  ContreeServerError,
  ContreeUnauthenticatedError,
  isEventType,
  isTerminalStatus,
  type OperationEvent,
  sha256Hex,
} from "../../sandbox/contree/index.ts";
import { type FakeContree, startFakeContree } from "../../scripts/fake-contree/index.ts";
import { skip } from "../utils/isolation.ts";

let fake: FakeContree;
let client: ContreeClient;
let busybox: string;
let ubuntu: string;

function makeClient(over: Partial<ContreeClientOptions> = {}): ContreeClient {
  return new ContreeClient({
    baseUrl: fake.url,
    token: fake.token,
    project: fake.project,
    retry: { baseDelayMs: 5, maxDelayMs: 50, maxAttempts: 8 },
    poll: { initialMs: 20, maxMs: 100 },
    ...over,
  });
}

/** Requests recorded by the fake from index `from` on, matching method and pathname (query ignored). */
function requests(from: number, method: string, path: string | RegExp) {
  return fake.requests.slice(from).filter((r) => {
    const pathname = r.path.split("?")[0]!;
    return r.method === method && (typeof path === "string" ? pathname === path : path.test(pathname));
  });
}

async function collect(iterable: AsyncIterable<OperationEvent>): Promise<OperationEvent[]> {
  const out: OperationEvent[] = [];
  for await (const event of iterable) out.push(event);
  return out;
}

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

beforeAll(async () => {
  fake = await startFakeContree({ project: "proj-test", delays: { pendingMs: 10, assignedMs: 10 } });
  client = makeClient();
  busybox = await client.resolveTag("busybox:latest");
  ubuntu = await client.resolveImage("tag:ubuntu:latest");
});

afterAll(async () => {
  await fake?.close();
});

describe("operations", () => {
  test("1 whoami", async () => {
    const me = await client.whoami();
    expect(typeof me.token_uuid).toBe("string");
    expect(me.permissions.spawn).toBe(true);
    expect(me.limits?.instance_max_timeout).toBeGreaterThan(0);
  });

  test("2 listImages: tagged, tag prefix, uuid, limit validation", async () => {
    const tagged = await client.listImages({ tagged: true });
    expect(tagged.map((i) => i.tag)).toEqual(expect.arrayContaining(["busybox:latest", "ubuntu:latest"]));
    const prefixed = await client.listImages({ tag: "busy" });
    expect(prefixed.map((i) => i.uuid)).toContain(busybox);
    expect((await client.listImages({ uuid: ubuntu })).map((i) => i.uuid)).toEqual([ubuntu]);
    expect((await client.listImages({ limit: 1 })).length).toBe(1);
    const e = await client.listImages({ limit: 0 }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ContreeBadRequestError);
  });

  test("3/4 tagImage moves a tag, untagImage removes it; 19 resolveTag follows the 302", async () => {
    const image = await client.tagImage(busybox, "client-test/tagged:1");
    expect(image.uuid).toBe(busybox);
    expect(image.tag).toBe("client-test/tagged:1");
    expect(await client.resolveTag("client-test/tagged:1")).toBe(busybox);
    await client.tagImage(ubuntu, "client-test/tagged:1"); // moves
    expect(await client.resolveTag("client-test/tagged:1")).toBe(ubuntu);
    await client.untagImage(ubuntu, "client-test/tagged:1");
    expect(client.resolveTag("client-test/tagged:1")).rejects.toBeInstanceOf(ContreeNotFoundError);
    expect(client.resolveImage("not-a-ref")).rejects.toBeInstanceOf(TypeError);
  });

  test("5 importImage → operation id; the import operation succeeds with a result image", async () => {
    const { uuid } = await client.importImage({
      registry: { url: "docker://docker.io/library/busybox:latest" },
      tag: "client-test/imported:1",
    });
    const operation = await client.waitForOperation(uuid);
    expect(operation.kind).toBe("image_import");
    expect(operation.status).toBe("SUCCESS");
    expect(operation.result?.image).toBeString();
    expect(await client.resolveTag("client-test/imported:1")).toBe(operation.result!.image!);
  });

  test("7 uploadFile (bytes and stream), 8 getFile, 9 hasFile, 6 listFiles, ensureFile", async () => {
    const bytes = new TextEncoder().encode(`hello ${crypto.randomUUID()}\n`);
    const sha = await sha256Hex(bytes);
    expect(await client.hasFile(sha)).toBe(false);
    const uploaded = await client.uploadFile(bytes);
    expect(uploaded.sha256).toBe(sha);
    expect(uploaded.size).toBe(bytes.length);
    expect(await client.hasFile(sha)).toBe(true);
    const file = await client.getFile(sha);
    expect(file.uuid).toBe(uploaded.uuid);
    expect(file.created_at).toBeString();
    const again = await client.uploadFile(new Blob([bytes]).stream());
    expect(again.uuid).toBe(uploaded.uuid);
    expect((await client.listFiles({ limit: 1000 })).map((f) => f.uuid)).toContain(uploaded.uuid);

    const mark = fake.requests.length;
    const ensured = await client.ensureFile(bytes);
    expect(ensured.uuid).toBe(uploaded.uuid);
    expect(requests(mark, "POST", "/v1/files")).toHaveLength(0);
    const fresh = await client.ensureFile(`fresh ${crypto.randomUUID()}`);
    expect(requests(mark, "POST", "/v1/files")).toHaveLength(1);
    expect((await client.getFile(fresh.sha256)).uuid).toBe(fresh.uuid);
    expect(client.getFile("0".repeat(64))).rejects.toBeInstanceOf(ContreeNotFoundError);
  });

  skip.unlessFakeContreeProcesses("10 spawn, 11 listOperations, 12 getOperation, 14 events (replay, spid, since)", async () => {
    const spawned = await client.spawn({
      command: "echo out; echo err >&2",
      shell: true,
      image: busybox,
      disposable: true,
    });
    expect(spawned.uuid).toBeString();
    expect(spawned.command).toBe("echo out; echo err >&2");
    const listed = await client.listOperations({ kind: "instance", limit: 1000 });
    expect(Array.isArray(listed)).toBe(true);
    expect(listed.map((o) => o.uuid)).toContain(spawned.uuid);
    const final = await client.waitForOperation(spawned.uuid);
    expect(final.status).toBe("SUCCESS");
    const again = await client.getOperation(spawned.uuid, { inflight: true });
    expect(again.uuid).toBe(spawned.uuid);

    const all = await collect(client.events(spawned.uuid));
    expect(all.map((e) => e.id)).toEqual(all.map((_, i) => i));
    expect(all[0]?.type).toBe("init");
    expect(all.at(-1)?.type).toBe("completion");
    expect(all.map((e) => e.type)).toEqual(expect.arrayContaining(["spawn", "stdout", "stderr", "exit"]));
    const main = await collect(client.events(spawned.uuid, { spid: 1 }));
    expect(main.length).toBeGreaterThan(0);
    expect(main.every((e) => e.spid === 1)).toBe(true);
    const tail = await collect(client.events(spawned.uuid, { since: 1 }));
    expect(tail.map((e) => e.id)).toEqual(all.slice(2).map((e) => e.id));
  });

  test("13 cancelOperation: a running operation ends CANCELLED; cancelling it again is 409", async () => {
    const spawned = await client.spawn({ command: "sleep", args: ["30"], image: busybox, disposable: true });
    await client.cancelOperation(spawned.uuid);
    const final = await client.pollUntilTerminal(spawned.uuid);
    expect(final.status).toBe("CANCELLED");
    const e = await client.cancelOperation(spawned.uuid).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ContreeConflictError);
    expect((e as ContreeError).status).toBe(409);
  });

  test("20 inspectImage, 21 listDirectory (JSON and text), 22 download/fileExists, 23 archive, 24 grep", async () => {
    const image = await fake.seedImage(
      {
        "/workspace/a.txt": "alpha\nbeta\n",
        "/workspace/sub/b.md": "gamma beta\n",
        "/workspace/c.txt": "zeta",
      },
      "client-test/inspect:1",
    );
    expect((await client.inspectImage(image)).tag).toBe("client-test/inspect:1");
    expect(client.inspectImage(crypto.randomUUID())).rejects.toBeInstanceOf(ContreeNotFoundError);

    const listing = await client.listDirectory(image, "/workspace");
    const names = listing.files.map((f) => f.path).sort();
    expect(names).toEqual(["a.txt", "c.txt", "sub"]);
    const sub = listing.files.find((f) => f.path === "sub")!;
    expect(sub.is_dir).toBe(true);
    expect(listing.files.find((f) => f.path === "a.txt")!.size).toBe(11);
    const ls = await client.listDirectory(image, "/workspace", { text: true });
    expect(ls).toContain("a.txt");

    expect(text(await client.download(image, "/workspace/a.txt"))).toBe("alpha\nbeta\n");
    expect(await client.fileExists(image, "/workspace/a.txt")).toBe(true);
    expect(await client.fileExists(image, "/workspace/nope.txt")).toBe(false);

    const tar = new Uint8Array(await new Response(await client.archive(image, "/workspace")).arrayBuffer());
    const tarText = new TextDecoder("latin1").decode(tar);
    expect(tarText).toContain("a.txt");
    expect(tarText).toContain("sub/b.md");
    expect(tarText).toContain("gamma beta");
    expect(await client.archiveExists(image, "/workspace/sub")).toBe(true);
    expect(await client.archiveExists(image, "/workspace/none")).toBe(false);

    const found = await client.grep(image, {
      pattern: ["beta", "zeta"],
      path: ["/workspace"],
      glob: "*.txt",
    });
    const hits = found.matches.filter((m) => m.type === "match").map((m) => m.line_text.trim());
    expect(hits.sort()).toEqual(["beta", "zeta"]);
    expect(found.truncated).toBe(false);
  });
});

skip.describeUnlessFakeContreeProcesses("run", () => {
  test("files, env, cwd and stdin reach the command; the result image holds its writes", async () => {
    const script = await client.ensureFile('#!/bin/sh\necho "script $1"\n');
    const result = await client.run({
      command: 'read line; ./tool.sh "$GREETING"; echo "$line" > out.txt; pwd',
      shell: true,
      image: ubuntu,
      cwd: "/workspace",
      env: { GREETING: "hi" },
      stdin: { value: "from stdin\n", close: true },
      files: { "/workspace/tool.sh": { uuid: script.uuid, mode: "0755" } },
    });
    expect(result.status).toBe("SUCCESS");
    expect(result.exitCode).toBe(0);
    expect(result.stdout).toBe("script hi\n/workspace\n");
    expect(result.resultImage).toBeString();
    expect(result.resultImage).not.toBe(ubuntu);
    expect(text(await client.download(result.resultImage!, "/workspace/out.txt"))).toBe("from stdin\n");
    expect((await client.inspectImage(result.resultImage!)).operation_uuid).toBe(result.operation.uuid);
  });

  test("non-zero exit is SUCCESS with the code; nothing changed → the input image; disposable → none", async () => {
    const failed = await client.run({ command: "echo oops >&2; exit 3", shell: true, image: busybox });
    expect(failed.status).toBe("SUCCESS");
    expect(failed.exitCode).toBe(3);
    expect(failed.stderr).toBe("oops\n");
    expect(failed.resultImage).toBe(busybox);
    const disposable = await client.run({
      command: "touch /workspace/x",
      shell: true,
      image: busybox,
      disposable: true,
    });
    expect(disposable.resultImage).toBeNull();
  });

  test("a timeout kills the command: timedOut, no exit code", async () => {
    const result = await client.run({
      command: "sleep",
      args: ["30"],
      image: busybox,
      timeout: 1,
      disposable: true,
    });
    expect(result.timedOut).toBe(true);
    expect(result.exitCode).toBeNull();
  });

  test("aborting run cancels the operation server-side", async () => {
    const ac = new AbortController();
    const mark = fake.requests.length;
    const pending = client.run(
      { command: "sleep", args: ["30"], image: busybox, disposable: true },
      {
        signal: ac.signal,
        onEvent: (e) => {
          if (e.type === "spawn" && e.spid === 1) ac.abort();
        },
      },
    );
    const e = await pending.catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ContreeAbortedError);
    const spawnPost = requests(mark, "POST", "/v1/instances");
    expect(spawnPost).toHaveLength(1);
    const cancels = requests(mark, "DELETE", /^\/v1\/operations\/[^/]+$/);
    expect(cancels).toHaveLength(1);
    const id = cancels[0]!.path.split("?")[0]!.split("/").at(-1)!;
    expect((await client.pollUntilTerminal(id)).status).toBe("CANCELLED");
  });

  test("aborting waitForOperation stops waiting (the operation keeps running)", async () => {
    const spawned = await client.spawn({ command: "sleep", args: ["30"], image: busybox, disposable: true });
    const ac = new AbortController();
    const waiting = client.waitForOperation(spawned.uuid, {
      signal: ac.signal,
      onEvent: (e) => {
        if (e.type === "spawn") ac.abort();
      },
    });
    expect(waiting).rejects.toBeInstanceOf(ContreeAbortedError);
    await waiting.catch(() => {});
    expect(isTerminalStatus((await client.getOperation(spawned.uuid)).status)).toBe(false);
    await client.cancelOperation(spawned.uuid);
  });
});

skip.describeUnlessFakeContreeProcesses("live instance (15–18)", () => {
  test("two subprocesses share the VM; stdin, kill, getSubprocess; stop() yields an image with the writes", async () => {
    const instance = await client.startInstance({ image: ubuntu, timeout: 120, cwd: "/workspace" });
    try {
      const first = await instance.exec({
        command: "echo one > /workspace/shared.txt; echo wrote",
        shell: true,
      });
      expect(first.spid).toBeGreaterThanOrEqual(2);
      expect(first.exitCode).toBe(0);
      expect(first.stdout).toBe("wrote\n");

      const second = await instance.exec({
        command: "sh",
        args: ["-c", "cat /workspace/shared.txt; echo two >> /workspace/shared.txt"],
      });
      expect(second.spid).toBeGreaterThan(first.spid);
      expect(second.stdout).toBe("one\n");

      // stdin: one chunk at creation (kept open), one written later with EOF
      const echoed = await instance.exec(
        { command: 'read a; read b; echo "$b-$a"', shell: true, stdin: { value: "x\n", close: false } },
        {
          onEvent: (e) => {
            if (e.type === "spawn" && e.spid !== undefined)
              void instance.writeStdin(e.spid, "y\n", { close: true });
          },
        },
      );
      expect(echoed.stdout).toBe("y-x\n");

      // kill: the result reports the signal
      const killed = await instance.exec(
        { command: "sleep", args: ["60"] },
        {
          onEvent: (e) => {
            if (e.type === "spawn" && e.spid !== undefined) void instance.kill(e.spid, "KILL");
          },
        },
      );
      expect(killed.signal).toBe(9);
      expect(killed.exitCode).toBeNull();
      const folded = await client.getSubprocess(instance.operationId, killed.spid);
      expect(folded.state.signal).toBe(9);
      expect(folded.state.exit_code).toBe(-1);
      const third = await client.getSubprocess(instance.operationId, second.spid);
      expect(third.state.exit_code).toBe(0);

      // The raw operations underneath (15 create, 17 kill), without the LiveInstance helpers.
      const raw = await client.createSubprocess(instance.operationId, { command: "sleep", args: ["60"] });
      expect(raw.spid).toBeGreaterThan(killed.spid);
      await client.killSubprocess(instance.operationId, raw.spid, "KILL");
      const rawEnd = await instance.wait(raw.spid);
      expect(rawEnd.signal).toBe(9);

      const image = await instance.stop();
      expect(image).toBeString();
      expect(text(await client.download(image!, "/workspace/shared.txt"))).toBe("one\ntwo\n");
    } finally {
      await instance.cancel();
    }
  });

  test("events stream incrementally through gzip: a process waiting for stdin is answered from its spawn event", async () => {
    const instance = await client.startInstance({ image: busybox, timeout: 60, disposable: true });
    try {
      const mark = fake.requests.length;
      // If events were buffered until the stream ends, the spawn event would never arrive and this would hang.
      const result = await instance.exec(
        { command: "read line; echo got $line", shell: true, stdin: { value: "", close: false } },
        {
          onEvent: (e) => {
            if (isEventType(e, "spawn")) void instance.writeStdin(e.spid!, "it\n", { close: true });
          },
        },
      );
      expect(result.stdout).toBe("got it\n");
      const streams = requests(mark, "GET", /\/events$/);
      expect(streams.length).toBeGreaterThan(0);
      expect(streams.every((r) => /gzip/.test(r.headers["accept-encoding"] ?? ""))).toBe(true);
      const raw = await fetch(`${fake.url}/v1/operations/${instance.operationId}/events`, {
        headers: {
          Authorization: `Bearer ${fake.token}`,
          Project: fake.project ?? "",
          "Accept-Encoding": "gzip",
        },
      });
      expect(raw.headers.get("content-encoding")).toBe("gzip");
      await raw.body?.cancel();
    } finally {
      await instance.cancel();
    }
  });
});

skip.describeUnlessFakeContreeProcesses("over instance_max_concurrency (§8: 429 or queueing)", () => {
  test("429 mode: the spawn is refused before processing, replayed, and creates one operation", async () => {
    const strict = await startFakeContree({
      limits: { instance_max_concurrency: 1 },
      overConcurrency: "429",
    });
    try {
      const c = new ContreeClient({ baseUrl: strict.url, token: strict.token, project: strict.project });
      const image = await c.resolveTag("busybox:latest");
      const first = await c.spawn({ command: "sleep", args: ["1"], image, disposable: true });
      const second = await c.run({ command: "echo", args: ["second"], image, disposable: true });
      expect(second.stdout).toBe("second\n");
      expect((await c.getOperation(first.uuid)).status).toBe("SUCCESS");
      // at least one 429 was answered and replayed, yet only two operations exist
      expect(
        strict.requests.filter((r) => r.method === "POST" && r.path === "/v1/instances").length,
      ).toBeGreaterThan(2);
      expect((await c.listOperations()).length).toBe(2);
    } finally {
      await strict.close();
    }
  });

  test("queue mode: a PENDING operation's 425s are waited out beyond the retry budget", async () => {
    const queued = await startFakeContree({
      limits: { instance_max_concurrency: 1 },
      overConcurrency: "queue",
    });
    try {
      const c = new ContreeClient({
        baseUrl: queued.url,
        token: queued.token,
        project: queued.project,
        retry: { maxAttempts: 2 },
      });
      const image = await c.resolveTag("busybox:latest");
      await c.spawn({ command: "sleep", args: ["2"], image, disposable: true });
      const second = await c.run({ command: "echo", args: ["queued"], image, disposable: true });
      expect(second.status).toBe("SUCCESS");
      expect(second.stdout).toBe("queued\n");
      // more event-log attempts than the transport's budget of 2: the iterator kept waiting
      const path = `/v1/operations/${second.operation.uuid}/events?follow=1`;
      expect(queued.requests.filter((r) => r.path === path).length).toBeGreaterThan(2);
    } finally {
      await queued.close();
    }
  });
});

describe("errors", () => {
  test("401 for a bad token; 400 without the Project header; 404 for an unknown operation", async () => {
    const bad = makeClient({ token: "wrong" });
    expect(bad.whoami()).rejects.toBeInstanceOf(ContreeUnauthenticatedError);
    const noProject = makeClient({ project: null });
    const e = (await noProject.whoami().catch((x: unknown) => x)) as ContreeError;
    expect(e).toBeInstanceOf(ContreeBadRequestError);
    expect(String(e.error)).toContain("Project");
    const missing = (await client.getOperation(crypto.randomUUID()).catch((x: unknown) => x)) as ContreeError;
    expect(missing).toBeInstanceOf(ContreeNotFoundError);
    expect(missing.requestMethod).toBe("GET");
    expect(missing.requestPath).toStartWith("/v1/operations/");
  });

  test("403 names the missing permission", async () => {
    const limited = await startFakeContree({ project: "p", permissions: { list: false, spawn: false } });
    try {
      const c = new ContreeClient({ baseUrl: limited.url, token: limited.token, project: limited.project });
      const e = (await c.listImages().catch((x: unknown) => x)) as ContreePermissionDeniedError;
      expect(e).toBeInstanceOf(ContreePermissionDeniedError);
      expect(e.status).toBe(403);
      expect(e.permission).toBe("list");
    } finally {
      await limited.close();
    }
  });
});

describe("faults", () => {
  test("a 500 storm on a GET is retried until it succeeds", async () => {
    fake.fail({ method: "GET", path: "/v1/whoami", status: 500, times: 3 });
    const mark = fake.requests.length;
    await client.whoami();
    expect(requests(mark, "GET", "/v1/whoami")).toHaveLength(4);
  });

  test("a 500 on POST /v1/instances is not retried", async () => {
    fake.fail({ method: "POST", path: "/v1/instances", status: 500 });
    const mark = fake.requests.length;
    const e = await client.spawn({ command: "true", image: busybox }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ContreeServerError);
    expect((e as ContreeError).attempts).toBe(1);
    expect(requests(mark, "POST", "/v1/instances")).toHaveLength(1);
  });

  test("a dropped connection on POST /v1/instances is not retried", async () => {
    fake.fail({ method: "POST", path: "/v1/instances", status: 0, mode: "drop" });
    const mark = fake.requests.length;
    const e = await client.spawn({ command: "true", image: busybox }).catch((x: unknown) => x);
    expect((e as ContreeError).kind).toBe("network");
    expect(requests(mark, "POST", "/v1/instances")).toHaveLength(1);
  });

  skip.unlessFakeContreeProcesses("425 at spawn is retried and exactly one operation exists afterwards", async () => {
    const before = (await client.listOperations({ limit: 1000 })).length;
    fake.fail({ method: "POST", path: "/v1/instances", status: 425, retryAfter: 0 });
    const mark = fake.requests.length;
    const result = await client.run({ command: "true", image: busybox, disposable: true });
    expect(result.exitCode).toBe(0);
    expect(requests(mark, "POST", "/v1/instances")).toHaveLength(2);
    expect((await client.listOperations({ limit: 1000 })).length).toBe(before + 1);
  });

  test("429 with Retry-After is waited out and retried", async () => {
    fake.fail({ method: "GET", path: "/v1/whoami", status: 429, retryAfter: 1 });
    const mark = fake.requests.length;
    await client.whoami();
    const seen = fake.requests.slice(mark).map((r) => `${r.method} ${r.path.split("?")[0]}`);
    expect(seen).toEqual(["GET /v1/whoami", "GET /v1/whoami"]);
  });

  skip.unlessFakeContreeProcesses("a dropped event stream and an sse_error are resumed with Last-Event-Id, no loss, no repeats", async () => {
    const spawned = await client.spawn({
      command: "for i in 1 2 3 4 5 6; do echo line $i; sleep 0.05; done",
      shell: true,
      image: busybox,
      disposable: true,
    });
    fake.dropStream({ operation: spawned.uuid, afterEvents: 2, mode: "drop" });
    fake.dropStream({ operation: spawned.uuid, afterEvents: 2, mode: "sse_error" });
    const mark = fake.requests.length;
    const live: OperationEvent[] = [];
    const final = await client.waitForOperation(spawned.uuid, { onEvent: (e) => live.push(e) });
    expect(final.status).toBe("SUCCESS");
    const replay = await collect(client.events(spawned.uuid));
    expect(live.map((e) => e.id)).toEqual(replay.map((e) => e.id));
    expect(live.map((e) => e.type)).toEqual(replay.map((e) => e.type));
    // (the fake may cut a connection before its frames leave the socket, so the first resume can
    // still start from scratch; at least one must carry the cursor, and cursors only move forward)
    const streams = requests(mark, "GET", `/v1/operations/${spawned.uuid}/events`);
    const cursors = streams.map((r) => r.headers["last-event-id"]).filter((c) => c !== undefined);
    expect(cursors.length).toBeGreaterThanOrEqual(1);
    expect(cursors.map(Number)).toEqual(cursors.map(Number).sort((a, b) => a - b));
    const stdout = live.filter((e) => isEventType(e, "stdout"));
    expect(stdout.length).toBeGreaterThan(0);
  });

  test("410 on the event log after completion is retried", async () => {
    const done = await client.run({ command: "echo x", shell: true, image: busybox, disposable: true });
    const path = `/v1/operations/${done.operation.uuid}/events`;
    fake.fail({ method: "GET", path, status: 410, retryAfter: 0 });
    const mark = fake.requests.length;
    const events = await collect(client.events(done.operation.uuid, { follow: true }));
    expect(events.at(-1)?.type).toBe("completion");
    expect(requests(mark, "GET", path)).toHaveLength(2);
  });
});
