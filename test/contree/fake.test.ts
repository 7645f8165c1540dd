// The fake ConTree API's semantics, over raw HTTP: real command execution, images and tags, files,
// imports, the operation lifecycle, the SSE log, subprocesses of a kept-alive VM, inspect, auth,
// gzip and fault injection. (The route table itself is checked in fake-routes.test.ts.)
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import http from "node:http";
import zlib from "node:zlib";
import {
  type FakeContree,
  type FakeContreeOptions,
  startFakeContree,
} from "../../scripts/fake-contree/index.ts";
import { fakeContreeProcessesUnavailable, skip } from "../utils/isolation.ts";

const TERMINAL = ["SUCCESS", "FAILED", "CANCELLED"];

interface Client {
  fake: FakeContree;
  api(path: string, init?: RequestInit & { json?: unknown }): Promise<Response>;
  spawn(body: Record<string, unknown>): Promise<string>;
  wait(id: string, until?: (op: any) => boolean): Promise<any>;
  /** GET …/events, retried while it answers 425 (the log does not exist yet). */
  openEvents(id: string, query?: string, headers?: Record<string, string>): Promise<Response>;
  events(id: string, query?: string, headers?: Record<string, string>): Promise<Sse>;
  /** Closes a process's stdin, retrying until the process exists. */
  closeStdin(id: string, spid?: number): Promise<void>;
  upload(bytes: Uint8Array | string): Promise<{ uuid: string; sha256: string; size: number }>;
  run(body: Record<string, unknown>): Promise<any>;
}

interface Sse {
  raw: string;
  frames: { id: number; event: string; data: any }[];
  comments: string[];
  errors: string[];
}

function parseSse(raw: string): Sse {
  const sse: Sse = { raw, frames: [], comments: [], errors: [] };
  for (const block of raw.split("\n\n")) {
    if (!block.trim()) continue;
    const fields: Record<string, string> = {};
    for (const line of block.split("\n")) {
      if (line.startsWith(":")) sse.comments.push(line.slice(1).trim());
      else {
        const i = line.indexOf(":");
        fields[line.slice(0, i)] = line.slice(i + 1).trimStart();
      }
    }
    if (fields.event === "sse_error") sse.errors.push(fields.data ?? "");
    else if (fields.data !== undefined) {
      sse.frames.push({ id: Number(fields.id), event: fields.event!, data: JSON.parse(fields.data) });
    }
  }
  return sse;
}

const text = (stream: { value: string; encoding: string }) =>
  stream.encoding === "base64" ? Buffer.from(stream.value, "base64").toString("utf8") : stream.value;

async function client(options: FakeContreeOptions = {}): Promise<Client> {
  const fake = await startFakeContree(options);
  const headers = (): Record<string, string> => ({
    Authorization: `Bearer ${fake.token}`,
    ...(fake.project === null ? {} : { Project: fake.project }),
  });
  const api: Client["api"] = (path, init = {}) => {
    const { json, ...rest } = init;
    return fetch(`${fake.url}/v1${path}`, {
      redirect: "manual",
      ...rest,
      headers: {
        ...headers(),
        ...(json !== undefined ? { "Content-Type": "application/json" } : {}),
        ...(rest.headers as any),
      },
      body: json !== undefined ? JSON.stringify(json) : rest.body,
    });
  };
  const c: Client = {
    fake,
    api,
    async spawn(body) {
      const res = await api("/instances", { method: "POST", json: body });
      if (res.status !== 201) throw new Error(`spawn: ${res.status} ${await res.text()}`);
      return (await res.json()).uuid;
    },
    async wait(id, until = (op) => TERMINAL.includes(op.status)) {
      for (let i = 0; i < 2000; i++) {
        const op = await (await api(`/operations/${id}`)).json();
        if (until(op)) return op;
        await Bun.sleep(10);
      }
      throw new Error(`operation ${id} did not get there`);
    },
    async openEvents(id, query = "", extra = {}) {
      for (;;) {
        const res = await api(`/operations/${id}/events${query ? `?${query}` : ""}`, { headers: extra });
        if (res.status !== 425) return res;
        await Bun.sleep(10);
      }
    },
    async events(id, query = "", extra = {}) {
      const res = await c.openEvents(id, query, extra);
      expect(res.status).toBe(200);
      return parseSse(await res.text());
    },
    async closeStdin(id, spid = 1) {
      for (;;) {
        const res = await api(`/operations/${id}/subprocesses/${spid}/stdin`, {
          method: "POST",
          json: { value: "", close: true },
        });
        if (res.status === 204) return;
        await Bun.sleep(10);
      }
    },
    async upload(bytes) {
      const res = await api("/files", {
        method: "POST",
        body: typeof bytes === "string" ? bytes : new Uint8Array(bytes),
        headers: { "Content-Type": "application/octet-stream" },
      });
      expect(res.status).toBe(201);
      return res.json();
    },
    async run(body) {
      return c.wait(await c.spawn(body));
    },
  };
  return c;
}

let c: Client;
beforeAll(async () => {
  c = await client();
});
afterAll(() => c.fake.close());

describe("auth", () => {
  test("401 without or with a wrong bearer token", async () => {
    const none = await fetch(`${c.fake.url}/v1/whoami`);
    expect(none.status).toBe(401);
    expect((await none.json()).status).toBe(401);
    const wrong = await fetch(`${c.fake.url}/v1/whoami`, {
      headers: { Authorization: "Bearer nope", Project: c.fake.project! },
    });
    expect(wrong.status).toBe(401);
  });

  test('400 Missing "Project" header in IAM mode; legacy mode needs none', async () => {
    const res = await fetch(`${c.fake.url}/v1/whoami`, {
      headers: { Authorization: `Bearer ${c.fake.token}` },
    });
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({ error: 'Missing "Project" header', status: 400 });
    const legacy = await client({ project: null, token: "jwt-token" });
    try {
      const ok = await fetch(`${legacy.fake.url}/v1/whoami`, {
        headers: { Authorization: "Bearer jwt-token" },
      });
      expect(ok.status).toBe(200);
    } finally {
      await legacy.fake.close();
    }
  });

  test("403 Insufficient permissions, and whoami reflects them", async () => {
    const limited = await client({ permissions: { list: false, spawn: false, spawn_disposable: false } });
    try {
      const list = await limited.api("/images");
      expect(list.status).toBe(403);
      expect(await list.json()).toEqual({ status: 403, error: "Insufficient permissions: list" });
      const spawn = await limited.api("/instances", {
        method: "POST",
        json: { command: "true", image: "tag:busybox:latest", disposable: true },
      });
      expect((await spawn.json()).error).toBe("Insufficient permissions: spawn or spawn_disposable");
      const me = await (await limited.api("/whoami")).json();
      expect(me.permissions).toEqual({
        import: true,
        spawn: false,
        spawn_disposable: false,
        list: false,
        cancel: true,
        set_image_tag: true,
      });
      expect(me.limits.instance_max_timeout).toBe(3600);
      expect(me.operations_stat).toEqual({ running_instances: 0, running_imports: 0 });
      expect(typeof me.token_uuid).toBe("string");
    } finally {
      await limited.fake.close();
    }
  });

  test("errors are gzip-compressed when the client accepts gzip", async () => {
    const body = await new Promise<{ encoding?: string; json: any }>((resolve, reject) => {
      http
        .get(`${c.fake.url}/v1/nope`, { headers: { "Accept-Encoding": "gzip" } }, (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (d) => chunks.push(d));
          res.on("end", () =>
            resolve({
              encoding: res.headers["content-encoding"],
              json: JSON.parse(zlib.gunzipSync(Buffer.concat(chunks)).toString()),
            }),
          );
        })
        .on("error", reject);
    });
    expect(body.encoding).toBe("gzip");
    expect(body.json.status).toBe(401);
  });
});

describe("images and tags", () => {
  test("seed images are tagged and hold the skeleton", async () => {
    const { images } = await (await c.api("/images?tagged=1")).json();
    expect(images.map((i: any) => i.tag)).toEqual(
      expect.arrayContaining(["busybox:latest", "ubuntu:latest"]),
    );
    for (const image of images)
      expect(Object.keys(image).sort()).toEqual(["created_at", "operation_uuid", "tag", "uuid"]);
    const busybox = images.find((i: any) => i.tag === "busybox:latest");
    const root = await (await c.api(`/inspect/${busybox.uuid}/list?path=/`)).json();
    expect(root.files.map((f: any) => f.path)).toEqual(
      expect.arrayContaining(["etc", "root", "tmp", "workspace"]),
    );
    const hostname = await c.api(`/inspect/${busybox.uuid}/download?path=/etc/hostname`);
    expect(hostname.status).toBe(200);
  });

  test("list validates limit and filters by tag prefix, uuid, offset, since/until", async () => {
    for (const limit of ["0", "1001", "x"]) {
      const res = await c.api(`/images?limit=${limit}`);
      expect(res.status).toBe(400);
      expect(await res.json()).toEqual({ error: "limit must be between 1 and 1000", status: 400 });
    }
    const a = await c.fake.seedImage({ "/a": "a" }, "prefix-test/a:1");
    const b = await c.fake.seedImage({ "/b": "b" }, "prefix-test/b:1");
    const byPrefix = (await (await c.api("/images?tag=prefix-test/")).json()).images;
    expect(byPrefix.map((i: any) => i.uuid)).toEqual([a, b]);
    expect((await (await c.api("/images?tag=prefix-test/&offset=1&limit=1")).json()).images[0].uuid).toBe(b);
    expect((await (await c.api(`/images?uuid=${a}`)).json()).images).toHaveLength(1);
    expect((await (await c.api("/images?since=2999-01-01T00:00:00Z")).json()).images).toEqual([]);
    expect((await (await c.api("/images?until=0")).json()).images).toEqual([]);
    expect((await (await c.api("/images?since=1h&tag=prefix-test/")).json()).images).toHaveLength(2);
    // Two hours later (the fake's clock), a third image.
    const createdA = Date.parse((await (await c.api(`/inspect/${a}/`)).json()).created_at);
    c.fake.advanceClock(2 * 3600_000);
    const late = await c.fake.seedImage({ "/c": "c" }, "prefix-test/c:1");
    const since = (await (await c.api("/images?since=1h&tag=prefix-test/")).json()).images;
    expect(since.map((i: any) => i.uuid)).toEqual([late]);
    const until = (
      await (await c.api(`/images?until=${Math.floor(createdA / 1000) + 3600}&tag=prefix-test/`)).json()
    ).images;
    expect(until.map((i: any) => i.uuid)).toEqual([a, b]);
    const iso = new Date(createdA + 3600_000).toISOString();
    expect((await (await c.api(`/images?since=${iso}&tag=prefix-test/`)).json()).images).toHaveLength(1);
    expect((await c.api("/images?since=yesterday")).status).toBe(400);
  });

  test("PATCH moves a tag, inspect ?tag= redirects, DELETE ?tag= removes it", async () => {
    const a = await c.fake.seedImage({ "/x": "1" });
    const b = await c.fake.seedImage({ "/x": "2" });
    const tagA = await c.api(`/images/${a}/tag`, { method: "PATCH", json: { tag: "moving/tag:1" } });
    expect(tagA.status).toBe(200);
    expect((await tagA.json()).tag).toBe("moving/tag:1");
    await c.api(`/images/${b}/tag`, { method: "PATCH", json: { tag: "moving/tag:1" } });
    expect((await (await c.api(`/inspect/${a}/`)).json()).tag).toBeNull();
    const redirect = await c.api("/inspect/?tag=moving/tag:1");
    expect(redirect.status).toBe(302);
    expect(redirect.headers.get("location")).toBe(`${b}/`);
    const followed = await c.api(`/inspect/${redirect.headers.get("location")}`);
    expect((await followed.json()).uuid).toBe(b);
    expect((await c.api(`/images/${b}/tag?tag=other`, { method: "DELETE" })).status).toBe(409);
    expect((await c.api(`/images/${b}/tag?tag=moving/tag:1`, { method: "DELETE" })).status).toBe(204);
    expect((await c.api("/inspect/?tag=moving/tag:1")).status).toBe(404);
    expect(await (await c.api("/inspect/")).json()).toEqual({ error: "tag is required", status: 400 });
    expect(
      (
        await c.api("/images/00000000-0000-4000-8000-000000000000/tag", {
          method: "PATCH",
          json: { tag: "t" },
        })
      ).status,
    ).toBe(404);
    expect((await c.api(`/images/${a}/tag`, { method: "PATCH", json: { tag: "bad tag" } })).status).toBe(400);
  });
});

describe("files", () => {
  test("upload (chunked) dedupes by sha256; GET/HEAD by sha256; list", async () => {
    const chunks = ["hello ", "chunked ", "world\n"];
    const stream = new ReadableStream({
      start(controller) {
        for (const chunk of chunks) controller.enqueue(new TextEncoder().encode(chunk));
        controller.close();
      },
    });
    const res = await c.api("/files", { method: "POST", body: stream, duplex: "half" } as RequestInit);
    expect(res.status).toBe(201);
    const first = await res.json();
    const sha = new Bun.CryptoHasher("sha256").update(chunks.join("")).digest("hex");
    expect(first).toEqual({ uuid: expect.any(String), sha256: sha, size: chunks.join("").length });
    const again = await c.upload(chunks.join(""));
    expect(again.uuid).toBe(first.uuid);
    const info = await (await c.api(`/files/${sha}`)).json();
    expect(info).toEqual({ ...first, created_at: expect.any(String), updated_at: expect.any(String) });
    expect((await c.api(`/files/${sha}`, { method: "HEAD" })).status).toBe(200);
    expect((await c.api(`/files/${"0".repeat(64)}`, { method: "HEAD" })).status).toBe(404);
    expect((await c.api(`/files/${"0".repeat(64)}`)).status).toBe(404);
    const { files } = await (await c.api("/files?limit=1000")).json();
    expect(files.map((f: any) => f.sha256)).toContain(sha);
  });
});

describe("spawn", () => {
  skip.unlessFakeContreeProcesses("runs the command; a changed tree becomes a new image with a parent link; same tree, same uuid", async () => {
    const busybox = (await (await c.api("/images?tag=busybox:latest")).json()).images[0].uuid;
    const op = await c.run({
      command: "echo hi; echo data > /workspace/out.txt",
      image: "tag:busybox:latest",
      shell: true,
    });
    expect(op.status).toBe("SUCCESS");
    expect(op.kind).toBe("instance");
    expect(op.image_uuid).toBe(busybox);
    expect(op.result_image_uuid).not.toBe(busybox);
    expect(op.result).toEqual({ image: op.result_image_uuid, tag: null });
    expect(text(op.metadata.result.stdout)).toBe("hi\n");
    expect(op.metadata.result.state.exit_code).toBe(0);
    expect(op.metadata.command).toBe("echo hi; echo data > /workspace/out.txt");
    const image = await (await c.api(`/inspect/${op.result_image_uuid}/`)).json();
    expect(image.operation_uuid).toBe(op.uuid);
    expect(
      await (await c.api(`/inspect/${op.result_image_uuid}/download?path=/workspace/out.txt`)).text(),
    ).toBe("data\n");
    // The input image did not change.
    expect(
      (await c.api(`/inspect/${busybox}/download?path=/workspace/out.txt`, { method: "HEAD" })).status,
    ).toBe(404);
    const same = await c.run({ command: "cat", args: ["/workspace/out.txt"], image: op.result_image_uuid });
    expect(same.result_image_uuid).toBe(op.result_image_uuid);
    expect(text(same.metadata.result.stdout)).toBe("data\n");
  });

  test("201 echoes the request with result null and a Location", async () => {
    const body = { command: "true", image: "tag:busybox:latest", disposable: true, env: { A: "1" } };
    const res = await c.api("/instances", { method: "POST", json: body });
    expect(res.status).toBe(201);
    const json = await res.json();
    expect(json).toEqual({ uuid: expect.any(String), ...body, result: null });
    expect(res.headers.get("location")).toBe(`/v1/operations/${json.uuid}`);
    const op = await c.wait(json.uuid);
    expect(op.result_image_uuid).toBeNull();
    expect(op.result).toBeNull();
  });

  skip.unlessFakeContreeProcesses("disposable runs save nothing; a non-zero exit is SUCCESS and still saves changes", async () => {
    const disposable = await c.run({
      command: "echo x > /root/x",
      shell: true,
      image: "tag:busybox:latest",
      disposable: true,
    });
    expect(disposable.status).toBe("SUCCESS");
    expect(disposable.result_image_uuid).toBeNull();
    const failing = await c.run({
      command: "echo y > /root/y; exit 7",
      shell: true,
      image: "tag:busybox:latest",
    });
    expect(failing.status).toBe("SUCCESS");
    expect(failing.metadata.result.state.exit_code).toBe(7);
    expect((await c.api(`/inspect/${failing.result_image_uuid}/download?path=/root/y`)).status).toBe(200);
  });

  skip.unlessFakeContreeProcesses("timeout kills the command: timed_out, exit -1, status SUCCESS, partial output kept", async () => {
    const op = await c.run({
      command: "echo before; sleep 30; echo after",
      shell: true,
      image: "tag:busybox:latest",
      timeout: 1,
    });
    expect(op.status).toBe("SUCCESS");
    expect(op.metadata.result.state).toMatchObject({ exit_code: -1, timed_out: true, signal: 9 });
    expect(text(op.metadata.result.stdout)).toBe("before\n");
    const tooLong = await c.api("/instances", {
      method: "POST",
      json: { command: "true", image: "tag:busybox:latest", timeout: 3601 },
    });
    expect(tooLong.status).toBe(400);
  });

  skip.unlessFakeContreeProcesses("truncate_output_at caps captured output with truncated:true and a truncated event", async () => {
    const id = await c.spawn({
      command: "head -c 5000 /dev/zero | tr '\\0' a",
      shell: true,
      image: "tag:busybox:latest",
      truncate_output_at: 100,
    });
    const op = await c.wait(id);
    expect(op.metadata.result.stdout.truncated).toBe(true);
    expect(text(op.metadata.result.stdout)).toBe("a".repeat(100));
    const { frames } = await c.events(id);
    const cut = frames.find((f) => f.event === "truncated");
    expect(cut?.data.data).toEqual({ stream: "stdout", bytes_emitted: 100, bytes_dropped: 4900 });
  });

  skip.unlessFakeContreeProcesses("files are injected with their mode, uid and gid", async () => {
    const file = await c.upload('#!/bin/sh\necho injected "$@"\n');
    const op = await c.run({
      command: "/opt/tool/run.sh",
      args: ["a", "b"],
      image: "tag:busybox:latest",
      files: {
        "/opt/tool/run.sh": { uuid: file.uuid, mode: "0755" },
        "/workspace/copy.sh": { uuid: file.uuid, mode: 0o600, uid: 1000, gid: 1000 },
      },
    });
    expect(text(op.metadata.result.stdout)).toBe("injected a b\n");
    const list = await (await c.api(`/inspect/${op.result_image_uuid}/list?path=/workspace`)).json();
    const copy = list.files.find((f: any) => f.path === "copy.sh");
    expect(copy.mode).toBe(0o100600);
    if (process.getuid?.() === 0) expect([copy.uid, copy.gid]).toEqual([1000, 1000]);
    const tool = await (await c.api(`/inspect/${op.result_image_uuid}/list?path=/opt/tool`)).json();
    expect(tool.files[0].mode).toBe(0o100755);
    const missing = await c.api("/instances", {
      method: "POST",
      json: {
        command: "true",
        image: "tag:busybox:latest",
        files: { "/x": { uuid: "00000000-0000-4000-8000-000000000000" } },
      },
    });
    expect(missing.status).toBe(404);
  });

  skip.unlessFakeContreeProcesses("stdin (ascii and base64), env, cwd, argv vs shell, binary output", async () => {
    const ascii = await c.run({
      command: "cat",
      image: "tag:busybox:latest",
      stdin: { value: "from stdin\n", encoding: "ascii" },
    });
    expect(text(ascii.metadata.result.stdout)).toBe("from stdin\n");
    const b64 = await c.run({
      command: "od",
      args: ["-An", "-tx1"],
      image: "tag:busybox:latest",
      stdin: { value: Buffer.from([0, 1, 255]).toString("base64"), encoding: "base64" },
    });
    expect(text(b64.metadata.result.stdout).trim()).toBe("00 01 ff");
    const env = await c.run({
      command: 'echo "$GREETING $HOME"; pwd',
      shell: true,
      image: "tag:busybox:latest",
      env: { GREETING: "hello" },
    });
    expect(text(env.metadata.result.stdout)).toBe("hello /root\n/root\n");
    const cwd = await c.run({ command: "pwd", image: "tag:busybox:latest", cwd: "/workspace" });
    expect(text(cwd.metadata.result.stdout)).toBe("/workspace\n");
    const argv = await c.run({
      command: "printf",
      args: ["%s|%s", "a b", "$HOME"],
      image: "tag:busybox:latest",
    });
    expect(text(argv.metadata.result.stdout)).toBe("a b|$HOME");
    const binary = await c.run({ command: "printf '\\001\\377'", shell: true, image: "tag:busybox:latest" });
    expect(binary.metadata.result.stdout).toEqual({
      value: Buffer.from([1, 255]).toString("base64"),
      encoding: "base64",
      truncated: false,
    });
    const asUser = await c.run({
      command: "id",
      args: ["-u"],
      image: "tag:busybox:latest",
      uid: 1000,
      gid: 1000,
    });
    expect(text(asUser.metadata.result.stdout)).toBe("1000\n");
  });

  test("without a sandbox (no usable bubblewrap) a spawn ends FAILED with the reason; the rest works", async () => {
    const bare = await client({ processes: false, delays: { pendingMs: 5, assignedMs: 5 } });
    try {
      expect(bare.fake.cannotRunProcesses).toContain("processes: false");
      const op = await bare.run({ command: "true", image: "tag:busybox:latest" });
      expect(op).toMatchObject({ status: "FAILED", result_image_uuid: null, result: null });
      expect(op.error).toBe(`cannot start the instance: ${bare.fake.cannotRunProcesses}`);
      const { frames } = await bare.events(op.uuid);
      expect(frames.map((f) => f.event)).toEqual(["completion"]);
      expect(frames[0]!.data.data).toMatchObject({ status: "FAILED", error: op.error });
      const listed = await (await bare.api("/operations?kind=instance&status=FAILED")).json();
      expect(listed.map((o: any) => o.uuid)).toEqual([op.uuid]);
      const seeded = await bare.fake.seedImage({ "/workspace/a.txt": "a\n" }, "bare:1");
      const file = await bare.api(`/inspect/${seeded}/download?path=/workspace/a.txt`);
      expect(await file.text()).toBe("a\n");
      expect((await bare.upload("bytes")).size).toBe(5);
    } finally {
      await bare.fake.close();
    }
    // Where bubblewrap works, the fake runs processes unless told not to.
    expect(c.fake.cannotRunProcesses === null).toBe(fakeContreeProcessesUnavailable === null);
  });

  test("request validation: args with shell:true, relative cwd, missing fields, unknown image", async () => {
    const post = (json: unknown) => c.api("/instances", { method: "POST", json });
    expect(
      (await post({ command: "ls", args: ["-l"], shell: true, image: "tag:busybox:latest" })).status,
    ).toBe(400);
    expect((await post({ command: "ls", cwd: "tmp", image: "tag:busybox:latest" })).status).toBe(400);
    expect((await post({ image: "tag:busybox:latest" })).status).toBe(400);
    expect((await post({ command: "ls" })).status).toBe(400);
    expect((await post({ command: "ls", image: "tag:no-such:tag" })).status).toBe(404);
    expect((await post({ command: "ls", image: "00000000-0000-4000-8000-000000000000" })).status).toBe(404);
    const bad = await post({ command: "ls", image: "tag:busybox:latest", timeout: "soon" });
    expect(await bad.json()).toEqual({ status: 400, error: expect.any(String) });
  });

  skip.unlessFakeContreeProcesses("preserve_env bakes the environment into the result image", async () => {
    const saved = await c.run({
      command: "true",
      image: "tag:busybox:latest",
      env: { BAKED: "yes" },
      preserve_env: true,
    });
    expect(saved.result_image_uuid).not.toBe(saved.image_uuid);
    const later = await c.run({
      command: 'echo "$BAKED"',
      shell: true,
      image: saved.result_image_uuid,
      disposable: true,
    });
    expect(text(later.metadata.result.stdout)).toBe("yes\n");
    const plain = await c.run({
      command: 'echo "[$NOPE]"',
      shell: true,
      image: "tag:busybox:latest",
      env: { NOPE: "x" },
    });
    expect(plain.result_image_uuid).toBe(plain.image_uuid);
  });

  skip.unlessFakeContreeProcesses("a layer over resources_limits.max_layer_bytes emits size_cap and fails without an image", async () => {
    const id = await c.spawn({
      command: "head -c 10000 /dev/zero > /root/big",
      shell: true,
      image: "tag:busybox:latest",
      resources_limits: { max_layer_bytes: 1000 },
    });
    const op = await c.wait(id);
    expect(op.status).toBe("FAILED");
    expect(op.error).toContain("exceeds");
    expect(op.result_image_uuid).toBeNull();
    const { frames } = await c.events(id);
    expect(frames.find((f) => f.event === "size_cap")?.data.data).toEqual({
      limit_bytes: 1000,
      file_size: 10000,
    });
    expect(frames.at(-1)?.data.data.status).toBe("FAILED");
  });

  skip.unlessFakeContreeProcesses("cancel: 202, then CANCELLED with no image; 409 on a terminal operation", async () => {
    const id = await c.spawn({ command: "sleep 60", image: "tag:busybox:latest" });
    await c.wait(id, (op) => op.status === "EXECUTING");
    const res = await c.api(`/operations/${id}`, { method: "DELETE" });
    expect(res.status).toBe(202);
    const op = await c.wait(id);
    expect(op.status).toBe("CANCELLED");
    expect(op.result_image_uuid).toBeNull();
    const again = await c.api(`/operations/${id}`, { method: "DELETE" });
    expect(await again.json()).toEqual({ error: "operation is not cancellable", status: 409 });
    expect((await c.api("/operations/00000000-0000-4000-8000-000000000000")).status).toBe(404);
  });

  skip.unlessFakeContreeProcesses("lifecycle goes PENDING → ASSIGNED → EXECUTING → SUCCESS; GET /operations is a bare array", async () => {
    const slow = await client({ delays: { pendingMs: 400, assignedMs: 400 } });
    try {
      const id = await slow.spawn({
        command: "cat",
        image: "tag:busybox:latest",
        stdin: { value: "", close: false },
      });
      const seen: string[] = [];
      await slow.wait(id, (op) => {
        if (seen.at(-1) !== op.status) seen.push(op.status);
        return op.status === "EXECUTING";
      });
      await slow.closeStdin(id);
      await slow.wait(id, (op) => {
        if (seen.at(-1) !== op.status) seen.push(op.status);
        return TERMINAL.includes(op.status);
      });
      // Polling may miss a short state, never reorder them.
      const order = ["PENDING", "ASSIGNED", "EXECUTING", "SUCCESS"];
      expect(seen.map((s) => order.indexOf(s))).toEqual([...seen.map((s) => order.indexOf(s))].sort());
      expect(seen).toContain("EXECUTING");
      expect(seen.at(-1)).toBe("SUCCESS");
      const list = await (await slow.api("/operations?kind=instance&status=SUCCESS")).json();
      expect(Array.isArray(list)).toBe(true);
      expect(list[0]).toMatchObject({ uuid: id, kind: "instance", status: "SUCCESS" });
      expect(Object.keys(list[0]).sort()).toEqual([
        "consumed_cpu",
        "consumed_memory",
        "created_at",
        "duration",
        "error",
        "image_size",
        "image_uuid",
        "kind",
        "result_image_uuid",
        "status",
        "uuid",
      ]);
      expect((await slow.api("/operations?status=DONE")).status).toBe(400);
      expect(await (await slow.api("/operations?kind=image_import")).json()).toEqual([]);
    } finally {
      await slow.fake.close();
    }
  });

  skip.unlessFakeContreeProcesses("over instance_max_concurrency: 429 with Retry-After, or queued in PENDING", async () => {
    const sleeper = { command: "sleep", args: ["60"], image: "tag:busybox:latest" };
    const limited = await client({ limits: { instance_max_concurrency: 1 } });
    try {
      const first = await limited.spawn(sleeper);
      const second = await limited.api("/instances", {
        method: "POST",
        json: { command: "true", image: "tag:busybox:latest" },
      });
      expect(second.status).toBe(429);
      expect(second.headers.get("retry-after")).toBe("1");
      await limited.api(`/operations/${first}`, { method: "DELETE" });
      await limited.wait(first);
    } finally {
      await limited.fake.close();
    }
    const queued = await client({ limits: { instance_max_concurrency: 1 }, overConcurrency: "queue" });
    try {
      const first = await queued.spawn(sleeper);
      await queued.wait(first, (op) => op.status === "EXECUTING");
      const second = await queued.spawn({ command: "true", image: "tag:busybox:latest" });
      await Bun.sleep(100);
      // It waits for the slot however long that takes.
      expect((await (await queued.api(`/operations/${second}`)).json()).status).toBe("PENDING");
      expect((await (await queued.api("/whoami")).json()).operations_stat.running_instances).toBe(1);
      await queued.api(`/operations/${first}`, { method: "DELETE" });
      expect((await queued.wait(second)).status).toBe("SUCCESS");
      expect((await queued.wait(first)).status).toBe("CANCELLED");
    } finally {
      await queued.fake.close();
    }
  });
});

skip.describeUnlessFakeContreeProcesses("events", () => {
  let id: string;
  let all: Sse;
  beforeAll(async () => {
    id = await c.spawn({ command: "echo one; echo two >&2", shell: true, image: "tag:busybox:latest" });
    await c.wait(id);
    all = await c.events(id);
  });

  test("replay: init, spawn, output, exit, completion with ids from 0", () => {
    const types = all.frames.map((f) => f.event);
    expect(types[0]).toBe("init");
    expect(types[1]).toBe("spawn");
    expect(types.at(-2)).toBe("exit");
    expect(types.at(-1)).toBe("completion");
    expect(types).toContain("stdout");
    expect(types).toContain("stderr");
    all.frames.forEach((f, i) => {
      expect(f.id).toBe(i);
      expect(f.data.id).toBe(i);
      expect(f.data.type).toBe(f.event);
      expect(Date.parse(f.data.ts)).not.toBeNaN();
    });
    expect(all.frames[0]!.data.spid).toBe(0);
    expect(all.frames[1]!.data.spid).toBe(1);
    expect(all.frames[1]!.data.data).toMatchObject({
      command: "/bin/sh",
      args: ["-c", "echo one; echo two >&2"],
      shell: true,
      cwd: "/root",
    });
    expect(all.frames.at(-2)!.data).toMatchObject({
      spid: 1,
      data: { code: 0, signal: -1, timed_out: false },
    });
    const completion = all.frames.at(-1)!.data;
    expect(completion.data).toMatchObject({ status: "SUCCESS", error: null });
    expect(completion.data).toHaveProperty("result_image_uuid");
    expect(typeof completion.data.duration_ms).toBe("number");
  });

  test("since and Last-Event-Id resume strictly after that id; spid filters", async () => {
    const since = await c.events(id, "since=2");
    expect(since.frames[0]!.id).toBe(3);
    expect(since.frames.length).toBe(all.frames.length - 3);
    const header = await c.events(id, "", { "Last-Event-Id": "3" });
    expect(header.frames[0]!.id).toBe(4);
    const main = await c.events(id, "spid=1");
    expect(main.frames.every((f) => f.data.spid === 1)).toBe(true);
    expect(main.frames.map((f) => f.event)).not.toContain("completion");
  });

  test("follow streams live with keepalives until completion", async () => {
    const live = await c.spawn({
      command: "echo start; cat; echo end",
      shell: true,
      image: "tag:busybox:latest",
      stdin: { value: "", close: false },
    });
    const res = await c.openEvents(live, "follow=1");
    const reader = res.body!.getReader();
    let raw = "";
    let released = false;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      raw += new TextDecoder().decode(value);
      // Idle (cat waits on stdin) until a keepalive comes, then let the command finish.
      if (!released && raw.includes(": keepalive")) {
        released = true;
        await c.closeStdin(live);
      }
    }
    const sse = parseSse(raw);
    const out = sse.frames
      .filter((f) => f.event === "stdout")
      .map((f) => f.data.data.value)
      .join("");
    expect(out).toBe("start\nend\n");
    expect(sse.frames.at(-1)!.event).toBe("completion");
    expect(sse.comments).toContain("keepalive");
  });

  test("425 with Retry-After before the log exists; 410 right after completion when configured", async () => {
    const slow = await client({ delays: { pendingMs: 1500 }, goneAfterCompletionMs: 60_000 });
    try {
      const pending = await slow.spawn({ command: "true", image: "tag:busybox:latest" });
      const early = await slow.api(`/operations/${pending}/events`);
      expect(early.status).toBe(425);
      expect(early.headers.get("retry-after")).toBe("1");
      // Cancelled before it ever ran: its log is just the completion (not 425 forever).
      const dropped = await slow.spawn({ command: "true", image: "tag:busybox:latest" });
      expect((await slow.api(`/operations/${dropped}`, { method: "DELETE" })).status).toBe(202);
      expect((await slow.wait(dropped)).status).toBe("CANCELLED");
      await slow.wait(pending);
      const gone = await slow.api(`/operations/${pending}/events`);
      expect(gone.status).toBe(410);
      expect(Number(gone.headers.get("retry-after"))).toBeGreaterThan(0);
      const cancelled = await slow.api(`/operations/${dropped}/events`);
      expect(cancelled.status).toBe(410);
    } finally {
      await slow.fake.close();
    }
  });

  test("the stream is gzip-compressed with a flush per event (decodable before it ends)", async () => {
    const live = await c.spawn({
      command: "echo first; cat",
      shell: true,
      image: "tag:busybox:latest",
      stdin: { value: "", close: false },
    });
    await c.wait(live, (op) => op.status === "EXECUTING");
    const first = await new Promise<{ encoding?: string; chunk: string }>((resolve, reject) => {
      const req = http.get(
        `${c.fake.url}/v1/operations/${live}/events?follow=1`,
        {
          headers: {
            Authorization: `Bearer ${c.fake.token}`,
            Project: c.fake.project!,
            "Accept-Encoding": "gzip",
          },
        },
        (res) => {
          const gunzip = zlib.createGunzip();
          res.pipe(gunzip);
          let seen = "";
          gunzip.on("data", (d: Buffer) => {
            seen += d.toString();
            if (!seen.includes('"value":"first\\n"')) return;
            req.destroy();
            resolve({ encoding: res.headers["content-encoding"], chunk: seen });
          });
        },
      );
      req.on("error", reject);
    });
    // The command still waits on its stdin: the output came through before the stream's end.
    expect(first.encoding).toBe("gzip");
    expect(first.chunk).toContain("event: stdout");
    expect((await (await c.api(`/operations/${live}`)).json()).status).toBe("EXECUTING");
    await c.closeStdin(live);
    expect((await c.wait(live)).status).toBe("SUCCESS");
  });
});

describe("kept-alive VM and subprocesses", () => {
  test("425 until the main process is spawned", async () => {
    const slow = await client({ delays: { assignedMs: 3000 } });
    try {
      const id = await slow.spawn({
        command: "sleep",
        args: ["2147483647"],
        image: "tag:busybox:latest",
        timeout: 5,
      });
      const early = await slow.api(`/operations/${id}/subprocesses`, {
        method: "POST",
        json: { command: "true" },
      });
      expect(early.status).toBe(425);
      expect(early.headers.get("retry-after")).toBe("1");
      await slow.api(`/operations/${id}`, { method: "DELETE" });
      await slow.wait(id);
    } finally {
      await slow.fake.close();
    }
  });

  skip.unlessFakeContreeProcesses("subprocesses share the VM's tree, stream by spid, take stdin, get killed; their writes land in the result image", async () => {
    const id = await c.spawn({
      command: "sleep",
      args: ["2147483647"],
      image: "tag:busybox:latest",
      timeout: 20,
    });
    await c.wait(id, (op) => op.status === "EXECUTING");
    const post = async (json: unknown) => {
      for (;;) {
        const res = await c.api(`/operations/${id}/subprocesses`, { method: "POST", json });
        if (res.status === 425) {
          await Bun.sleep(10);
          continue;
        }
        expect(res.status).toBe(201);
        return (await res.json()).spid as number;
      }
    };
    const result = (spid: number) => c.api(`/operations/${id}/subprocesses/${spid}`).then((r) => r.json());
    const settled = async (spid: number) => {
      for (;;) {
        const r = await result(spid);
        if (r.state.exit_code !== -1 || r.state.signal !== -1) return r;
        await Bun.sleep(10);
      }
    };

    const writer = await post({ command: "echo from-sub > /workspace/sub.txt; echo out", shell: true });
    // The main process is up now: inflight=1 shows its live (folded) result.
    const running = await (await c.api(`/operations/${id}`)).json();
    expect(running.metadata.result).toBeNull();
    const inflight = await (await c.api(`/operations/${id}?inflight=1`)).json();
    expect(inflight.metadata.result.state).toMatchObject({ exit_code: -1, signal: -1 });
    expect(writer).toBe(2);
    const wrote = await settled(writer);
    expect(wrote.state.exit_code).toBe(0);
    expect(text(wrote.stdout)).toBe("out\n");

    const reader = await post({
      command: "cat",
      args: ["/workspace/sub.txt", "-"],
      stdin: { value: "", close: false },
    });
    expect(reader).toBe(3);
    expect((await result(reader)).state.exit_code).toBe(-1);
    const stdin = await c.api(`/operations/${id}/subprocesses/${reader}/stdin`, {
      method: "POST",
      json: { value: Buffer.from("piped\n").toString("base64"), encoding: "base64", close: true },
    });
    expect(stdin.status).toBe(204);
    expect(text((await settled(reader)).stdout)).toBe("from-sub\npiped\n");
    const closed = await c.api(`/operations/${id}/subprocesses/${reader}/stdin`, {
      method: "POST",
      json: { value: "x" },
    });
    expect(closed.status).toBe(409);

    const sleeper = await post({ command: "sleep", args: ["100"] });
    const kill = await c.api(`/operations/${id}/subprocesses/${sleeper}?signal=TERM`, { method: "DELETE" });
    expect(kill.status).toBe(204);
    expect((await settled(sleeper)).state).toMatchObject({ exit_code: -1, signal: 15 });
    expect((await c.api(`/operations/${id}/subprocesses/99`)).status).toBe(404);
    expect(
      (await c.api(`/operations/${id}/subprocesses/${sleeper}?signal=NOPE`, { method: "DELETE" })).status,
    ).toBe(400);

    const sub = await c.events(id, `spid=${writer}`);
    expect(sub.frames.map((f) => f.event)).toEqual(["spawn", "stdout", "exit"]);
    expect(sub.frames.every((f) => f.data.spid === writer)).toBe(true);

    // Ending the main process ends the VM: the tree, with the subprocesses' writes, is the result.
    expect(
      (await c.api(`/operations/${id}/subprocesses/1?signal=SIGKILL`, { method: "DELETE" })).status,
    ).toBe(204);
    const op = await c.wait(id);
    expect(op.status).toBe("SUCCESS");
    expect(op.metadata.result.state).toMatchObject({ exit_code: -1, signal: 9, timed_out: false });
    expect(
      await (await c.api(`/inspect/${op.result_image_uuid}/download?path=/workspace/sub.txt`)).text(),
    ).toBe("from-sub\n");
    const late = await c.api(`/operations/${id}/subprocesses`, {
      method: "POST",
      json: { command: "true" },
    });
    expect(late.status).toBe(409);
  });

  skip.unlessFakeContreeProcesses("stdin of the main process is spid 1; remaining subprocesses die with it", async () => {
    const id = await c.spawn({
      command: "cat > /workspace/in.txt",
      shell: true,
      image: "tag:busybox:latest",
      stdin: { value: "a", close: false },
    });
    await c.wait(id, (op) => op.status === "EXECUTING");
    let spid = 0;
    for (;;) {
      const res = await c.api(`/operations/${id}/subprocesses`, {
        method: "POST",
        json: { command: "sleep", args: ["100"] },
      });
      if (res.status === 201) {
        spid = (await res.json()).spid;
        break;
      }
      await Bun.sleep(10);
    }
    const res = await c.api(`/operations/${id}/subprocesses/1/stdin`, {
      method: "POST",
      json: { value: "bc", close: true },
    });
    expect(res.status).toBe(204);
    const op = await c.wait(id);
    expect(
      await (await c.api(`/inspect/${op.result_image_uuid}/download?path=/workspace/in.txt`)).text(),
    ).toBe("abc");
    const orphan = await (await c.api(`/operations/${id}/subprocesses/${spid}`)).json();
    expect(orphan.state).toMatchObject({ exit_code: -1, signal: 9 });
    const { frames } = await c.events(id);
    expect(frames.filter((f) => f.event === "stdin").map((f) => f.data.data.value)).toEqual(["a", "bc"]);
  });
});

describe("import", () => {
  test("import lifecycle; the same URL gives the same image; a bad URL fails", async () => {
    const res = await c.api("/images/import", {
      method: "POST",
      json: { registry: { url: "docker://docker.io/library/alpine:3.19" }, tag: "alpine:3.19", timeout: 60 },
    });
    expect(res.status).toBe(201);
    const { uuid } = await res.json();
    expect(res.headers.get("location")).toBe(`/v1/operations/${uuid}`);
    const op = await c.wait(uuid);
    expect(op).toMatchObject({
      kind: "image_import",
      status: "SUCCESS",
      metadata: {
        registry: { url: "docker://docker.io/library/alpine:3.19" },
        tag: "alpine:3.19",
        timeout: 60,
      },
      result: { image: op.result_image_uuid, tag: "alpine:3.19" },
    });
    const image = await (await c.api("/inspect/?tag=alpine:3.19")).headers.get("location");
    expect(image).toBe(`${op.result_image_uuid}/`);
    const hostname = await c.api(`/inspect/${op.result_image_uuid}/download?path=/etc/hostname`);
    expect(await hostname.text()).toBe("linuxkit\n");

    const again = await c.wait(
      (
        await (
          await c.api("/images/import", {
            method: "POST",
            json: { registry: { url: "docker://docker.io/library/alpine:3.19" } },
          })
        ).json()
      ).uuid,
    );
    expect(again.result_image_uuid).toBe(op.result_image_uuid);

    const bad = await c.wait(
      (
        await (
          await c.api("/images/import", { method: "POST", json: { registry: { url: "not a url" } } })
        ).json()
      ).uuid,
    );
    expect(bad.status).toBe("FAILED");
    expect(bad.error).toContain("not a url");
    expect((await c.api("/images/import", { method: "POST", json: { registry: {} } })).status).toBe(400);
    expect(
      (
        await c.api("/images/import", {
          method: "POST",
          json: { registry: { url: "docker://x/y" }, timeout: 99999 },
        })
      ).status,
    ).toBe(400);
  });
});

skip.describeUnlessFakeContreeProcesses("inspect", () => {
  let image: string;
  beforeAll(async () => {
    const op = await c.run({
      command: [
        "mkdir -p /data/sub/.hidden",
        "printf 'alpha\\nbeta\\ngamma\\n' > /data/a.txt",
        "printf 'Beta\\n' > /data/sub/b.md",
        "printf 'beta\\n' > /data/sub/.hidden/h.txt",
        "printf '\\000\\001beta' > /data/bin.dat",
        "ln -s a.txt /data/link",
        "chmod 600 /data/a.txt",
      ].join(" && "),
      shell: true,
      image: "tag:busybox:latest",
    });
    image = op.result_image_uuid;
  });

  test("list: FileItems with mode bits and symlinks; text variant; 404/422", async () => {
    const list = await (await c.api(`/inspect/${image}/list?path=/data`)).json();
    expect(list.path).toBe("/data");
    expect(list.files.map((f: any) => f.path)).toEqual(["a.txt", "bin.dat", "link", "sub"]);
    const a = list.files[0];
    expect(a).toMatchObject({
      size: 17,
      mode: 0o100600,
      is_regular: true,
      is_dir: false,
      is_symlink: false,
      symlink_to: "",
      owner: "root",
      group: "root",
    });
    expect(typeof a.mtime).toBe("number");
    expect(list.files[2]).toMatchObject({ is_symlink: true, symlink_to: "a.txt" });
    expect(list.files[3]).toMatchObject({ is_dir: true });
    const textual = await (await c.api(`/inspect/${image}/list?path=/data&text`)).text();
    expect(textual).toContain("link -> a.txt");
    expect(textual).toMatch(/-rw------- .* a\.txt/);
    expect((await c.api(`/inspect/${image}/list?path=/nope`)).status).toBe(404);
    expect((await c.api(`/inspect/${image}/list?path=/data/a.txt`)).status).toBe(422);
    expect((await c.api("/inspect/00000000-0000-4000-8000-000000000000/list?path=/")).status).toBe(404);
  });

  test("download exact bytes (symlinks followed inside the image) and HEAD", async () => {
    const bin = await c.api(`/inspect/${image}/download?path=/data/bin.dat`);
    expect(bin.headers.get("content-type")).toBe("application/octet-stream");
    expect(Buffer.from(await bin.arrayBuffer())).toEqual(Buffer.from([0, 1, ...Buffer.from("beta")]));
    expect(await (await c.api(`/inspect/${image}/download?path=/data/link`)).text()).toBe(
      "alpha\nbeta\ngamma\n",
    );
    expect((await c.api(`/inspect/${image}/download?path=/data/a.txt`, { method: "HEAD" })).status).toBe(200);
    expect((await c.api(`/inspect/${image}/download?path=/data/none`, { method: "HEAD" })).status).toBe(404);
    expect((await c.api(`/inspect/${image}/download?path=/data`)).status).toBe(422);
  });

  test("archive is a tar of the subtree", async () => {
    const res = await c.api(`/inspect/${image}/archive?path=/data/sub`);
    expect(res.headers.get("content-type")).toBe("application/x-tar");
    const tar = Buffer.from(await res.arrayBuffer());
    const entries: { name: string; type: string; body: string }[] = [];
    for (let at = 0; at + 512 <= tar.length; ) {
      const header = tar.subarray(at, at + 512);
      if (header.every((b) => b === 0)) break;
      const field = (o: number, n: number) =>
        header
          .subarray(o, o + n)
          .toString()
          .replace(/\0.*$/s, "");
      const size = Number.parseInt(field(124, 12), 8);
      const prefix = field(345, 155);
      entries.push({
        name: (prefix ? `${prefix}/` : "") + field(0, 100),
        type: field(156, 1),
        body: tar.subarray(at + 512, at + 512 + size).toString(),
      });
      at += 512 + Math.ceil(size / 512) * 512;
    }
    expect(entries).toEqual([
      { name: "data/sub/", type: "5", body: "" },
      { name: "data/sub/.hidden/", type: "5", body: "" },
      { name: "data/sub/.hidden/h.txt", type: "0", body: "beta\n" },
      { name: "data/sub/b.md", type: "0", body: "Beta\n" },
    ]);
    expect((await c.api(`/inspect/${image}/archive?path=/data/sub`, { method: "HEAD" })).status).toBe(200);
    expect((await c.api(`/inspect/${image}/archive?path=/missing`, { method: "HEAD" })).status).toBe(404);
  });

  test("grep: OR-ed patterns, case, globs with excludes, context, limits; binaries and symlinks skipped", async () => {
    const grep = async (query: string) => {
      const res = await c.api(`/inspect/${image}/grep?${query}`);
      expect(res.status).toBe(200);
      return res.json();
    };
    const basic = await grep("pattern=beta&path=/data");
    expect(basic.matches.map((m: any) => [m.path, m.line_number])).toEqual([
      ["/data/a.txt", 2],
      ["/data/sub/.hidden/h.txt", 1],
    ]);
    expect(basic.matches[0]).toEqual({
      path: "/data/a.txt",
      line_number: 2,
      absolute_offset: 6,
      line_text: "beta",
      line_bytes: 4,
      submatches: [{ text: "beta", start: 0, end: 4 }],
      type: "match",
    });
    expect(basic).toMatchObject({ path: "/data", patterns: ["beta"], truncated: false });
    const insensitive = await grep("pattern=beta&path=/data&case=insensitive&glob=*.md");
    expect(insensitive.matches.map((m: any) => m.path)).toEqual(["/data/sub/b.md"]);
    const excluded = await grep("pattern=beta&pattern=gamma&path=/data&glob=!sub");
    expect(excluded.matches.map((m: any) => m.line_text)).toEqual(["beta", "gamma"]);
    const context = await grep("pattern=beta&path=/data/a.txt&before=1&after=1");
    expect(context.matches.map((m: any) => [m.type, m.line_text])).toEqual([
      ["context", "alpha"],
      ["match", "beta"],
      ["context", "gamma"],
    ]);
    const limited = await grep("pattern=a&path=/data&max_total=1");
    expect(limited.matches).toHaveLength(1);
    expect(limited.truncated).toBe(true);
    expect((await grep("pattern=a&path=/data/a.txt&max_count=2")).matches).toHaveLength(2);
    expect((await c.api(`/inspect/${image}/grep?pattern=x&path=/missing`)).status).toBe(404);
    expect((await c.api(`/inspect/${image}/grep?path=/data`)).status).toBe(400);
    expect((await c.api(`/inspect/${image}/grep?pattern=(&path=/data`)).status).toBe(400);
  });
});

describe("fault injection", () => {
  test("status faults for the next N matching requests, with Retry-After; drop; clearFaults", async () => {
    c.fake.fail({ path: "/v1/whoami", status: 500, times: 2 });
    expect((await c.api("/whoami")).status).toBe(500);
    expect((await c.api("/whoami")).status).toBe(500);
    expect((await c.api("/whoami")).status).toBe(200);
    c.fake.fail({ method: "POST", path: /^\/v1\/instances$/, status: 429, retryAfter: 3 });
    const limited = await c.api("/instances", {
      method: "POST",
      json: { command: "true", image: "tag:busybox:latest" },
    });
    expect(limited.status).toBe(429);
    expect(limited.headers.get("retry-after")).toBe("3");
    expect(await limited.json()).toEqual({ error: expect.any(String), status: 429 });
    // (fetch retries a dropped keep-alive connection once by itself, hence two.)
    c.fake.fail({ path: "/v1/images", status: 500, mode: "drop", times: 2 });
    expect(c.api("/images")).rejects.toThrow();
    c.fake.fail({ path: "/v1/images", status: 503 });
    c.fake.clearFaults();
    expect((await c.api("/images")).status).toBe(200);
    expect(c.fake.requests.some((r) => r.method === "POST" && r.path === "/v1/instances")).toBe(true);
    expect(c.fake.requests.at(-1)!.headers.authorization).toBe(`Bearer ${c.fake.token}`);
  });

  skip.unlessFakeContreeProcesses("stream faults: sse_error after K events, then resume with Last-Event-Id; drop cuts the stream", async () => {
    const id = await c.spawn({ command: "echo a; echo b", shell: true, image: "tag:busybox:latest" });
    await c.wait(id);
    c.fake.dropStream({ operation: id, afterEvents: 2, mode: "sse_error" });
    const broken = await c.events(id);
    expect(broken.frames.map((f) => f.id)).toEqual([0, 1]);
    expect(broken.errors).toHaveLength(1);
    const resumed = await c.events(id, "", { "Last-Event-Id": "1" });
    expect(resumed.frames[0]!.id).toBe(2);
    expect(resumed.frames.at(-1)!.event).toBe("completion");
    c.fake.dropStream({ afterEvents: 1, mode: "drop" });
    const res = await c.api(`/operations/${id}/events`);
    expect(res.status).toBe(200);
    expect(res.text()).rejects.toThrow();
    expect((await c.events(id)).frames.at(-1)!.event).toBe("completion");
  });
});
