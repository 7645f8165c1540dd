// Streamed bodies that go wrong, against the fake ConTree service with its body faults (the faults of
// the official client's stub server: a gzip archive whose trailer never comes, a download that goes
// silent, a connection that dies mid-body). Every such failure is a typed ContreeError — truncation
// and stalls distinguishable — a silent stream ends after the client's idle bound, event streams
// resume through it, and the contree provider reports UNAVAILABLE without caching the failed load.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import {
  ContreeClient,
  type ContreeClientOptions,
  ContreeError,
  ContreeStreamStalledError,
  ContreeTruncatedError,
  type OperationEvent,
} from "../../sandbox/contree/index.ts";
import { ContreeProvider } from "../../sandbox/contree/provider.ts";
import { scanTar } from "../../sandbox/contree/tar.ts";
import { SandboxError } from "../../sandbox/provider.ts";
import { type FakeContree, startFakeContree } from "../../scripts/fake-contree/index.ts";
import { skip } from "../utils/isolation.ts";

const IDLE_MS = 400;

let fake: FakeContree;
let image: string;
const archivePath = () => `/v1/inspect/${image}/archive`;

// Several files, so the tar stream (~10 KB) is well past the 1 KiB the faults let through.
const WORKSPACE: Record<string, string> = {};
for (let i = 0; i < 8; i++) WORKSPACE[`/workspace/f${i}.txt`] = `${String(i).repeat(1000)}\n`;

function makeClient(over: Partial<ContreeClientOptions> = {}): ContreeClient {
  return new ContreeClient({
    baseUrl: fake.url,
    token: fake.token,
    project: fake.project,
    retry: { baseDelayMs: 5, maxDelayMs: 50, maxAttempts: 6 },
    poll: { initialMs: 20, maxMs: 100 },
    streamIdleMs: IDLE_MS,
    ...over,
  });
}

/** Reads a stream to its end (or its error). */
async function drain(stream: ReadableStream<Uint8Array>): Promise<number> {
  let bytes = 0;
  for await (const chunk of stream) bytes += chunk.byteLength;
  return bytes;
}

async function failure(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => new Error("expected a failure, got success"),
    (error: unknown) => error,
  );
}

async function archiveNames(client: ContreeClient): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of scanTar(await client.archive(image, "/workspace"))) names.push(entry.name);
  return names;
}

beforeAll(async () => {
  // Keepalives well inside the idle bound: a quiet but live event stream is not a stalled one.
  fake = await startFakeContree({ delays: { pendingMs: 5, assignedMs: 5 }, keepaliveMs: 100 });
  image = await fake.seedImage(WORKSPACE);
});

afterAll(async () => {
  await fake.close();
});

describe("client: archive streams", () => {
  test("a gzip archive whose trailer never comes is a typed truncation, not a runtime TypeError", async () => {
    const client = makeClient();
    const complete = await drain(await client.archive(image, "/workspace"));
    expect(complete).toBeGreaterThan(8 * 1000);
    fake.breakBody({ method: "GET", path: archivePath(), afterBytes: 1024, mode: "truncate" });
    const error = await failure(drain(await client.archive(image, "/workspace")));
    expect(error).toBeInstanceOf(ContreeTruncatedError);
    expect(error).toBeInstanceOf(ContreeError);
    expect((error as ContreeTruncatedError).kind).toBe("truncated");
    expect((error as ContreeTruncatedError).reason).toBe("compression");
    expect((error as ContreeTruncatedError).requestPath).toBe(archivePath());
    expect(fake.requests.at(-1)?.headers["accept-encoding"]).toContain("gzip");
    // The fault is spent: the same request now reads the whole archive.
    expect(await drain(await client.archive(image, "/workspace"))).toBe(complete);
  });

  test("the tar reader over a truncated archive fails typed too", async () => {
    const client = makeClient();
    expect((await archiveNames(client)).filter((n) => n.endsWith(".txt"))).toHaveLength(8);
    fake.breakBody({ path: archivePath(), afterBytes: 1024, mode: "truncate" });
    const error = await failure(archiveNames(client));
    expect(error).toBeInstanceOf(ContreeTruncatedError);
  });

  test("a connection that dies mid-body is a typed truncation (connection)", async () => {
    const client = makeClient();
    fake.breakBody({ path: archivePath(), afterBytes: 2048, mode: "reset" });
    const error = await failure(drain(await client.archive(image, "/workspace")));
    expect(error).toBeInstanceOf(ContreeTruncatedError);
    expect((error as ContreeTruncatedError).reason).toBe("connection");
  });

  test("a silent archive ends with a typed stall after the idle bound, mid-body or before any byte", async () => {
    for (const afterBytes of [1024, 0]) {
      const client = makeClient();
      fake.breakBody({ path: archivePath(), afterBytes, mode: "stall" });
      const started = Date.now();
      const error = await failure(drain(await client.archive(image, "/workspace")));
      expect(error).toBeInstanceOf(ContreeStreamStalledError);
      expect((error as ContreeStreamStalledError).kind).toBe("stream_stalled");
      expect((error as ContreeStreamStalledError).idleMs).toBe(IDLE_MS);
      // It waited out the silence rather than failing at once (a lower bound, not a speed claim).
      expect(Date.now() - started).toBeGreaterThanOrEqual(IDLE_MS - 50);
      expect(await archiveNames(client)).toContain("workspace/f7.txt");
    }
  });

  test("a slow reader is not a stalled server: the idle clock runs only while the reader waits", async () => {
    const client = makeClient();
    const reader = (await client.archive(image, "/workspace")).getReader();
    let bytes = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      bytes += value.byteLength;
      await Bun.sleep(IDLE_MS + 100);
    }
    expect(bytes).toBeGreaterThan(8 * 1000);
  });
});

describe("tar reader: archives cut short without gzip to notice", () => {
  async function* chunks(bytes: Uint8Array): AsyncGenerator<Uint8Array> {
    for (let at = 0; at < bytes.length; at += 700) yield bytes.subarray(at, at + 700);
  }
  async function scan(bytes: Uint8Array): Promise<string[]> {
    const names: string[] = [];
    for await (const entry of scanTar(chunks(bytes))) names.push(entry.name);
    return names;
  }

  test("an archive that stops inside an entry, inside a header or before its end blocks is truncated", async () => {
    const client = makeClient();
    const whole = new Uint8Array(await new Response(await client.archive(image, "/workspace")).arrayBuffer());
    expect((await scan(whole)).filter((n) => n.endsWith(".txt"))).toHaveLength(8);
    // The first entry is the workspace directory (one header block); the next a 1001-byte file.
    const cuts = {
      "inside an entry": 512 * 2 + 100,
      "inside a header": 512 * 4 + 100,
      "at a block edge": 512 * 4,
    };
    for (const [what, at] of Object.entries(cuts)) {
      const error = await failure(scan(whole.subarray(0, at)));
      expect(error, what).toBeInstanceOf(ContreeTruncatedError);
      expect((error as ContreeTruncatedError).reason, what).toBe("archive");
    }
  });
});

skip.describeUnlessFakeContreeProcesses("client: event streams", () => {
  async function runWithEvents(client: ContreeClient, fault: (operation: string) => void) {
    const busybox = await client.resolveTag("busybox:latest");
    const spawned = await client.spawn({
      command: "for i in 1 2 3 4; do echo line $i; sleep 0.3; done",
      shell: true,
      image: busybox,
      disposable: true,
    });
    fault(spawned.uuid);
    const live: OperationEvent[] = [];
    const final = await client.waitForOperation(spawned.uuid, { onEvent: (e) => live.push(e) });
    const replay: OperationEvent[] = [];
    for await (const event of client.events(spawned.uuid)) replay.push(event);
    return { final, live, replay };
  }

  for (const mode of ["stall", "truncate", "reset"] as const) {
    test(`a ${mode} event stream is resumed: every event once, in order, no fallback to polling`, async () => {
      const lost: unknown[] = [];
      const client = makeClient({ onStreamLost: (_id, error) => lost.push(error) });
      const mark = fake.requests.length;
      const { final, live, replay } = await runWithEvents(client, (operation) =>
        fake.breakBody({ path: `/v1/operations/${operation}/events`, afterBytes: 300, mode }),
      );
      expect(final.status).toBe("SUCCESS");
      expect(lost).toEqual([]);
      expect(live.map((e) => e.id)).toEqual(replay.map((e) => e.id));
      expect(live.at(-1)?.type).toBe("completion");
      const connects = fake.requests.slice(mark).filter((r) => /\/events$/.test(r.path.split("?")[0]!));
      expect(connects.length).toBeGreaterThanOrEqual(2);
    });
  }
});

describe("provider: file listings over broken archives", () => {
  let provider: ContreeProvider;
  beforeAll(() => {
    provider = new ContreeProvider({
      client: makeClient(),
      image: "tag:ubuntu:latest",
      imageSource: null,
      network: false,
      limits: { timeoutMs: 60_000, maxOutputBytes: 1024 * 1024 },
      log: () => {},
    });
  });
  afterAll(async () => {
    await provider.close();
  });

  for (const mode of ["truncate", "stall", "reset"] as const) {
    test(`a ${mode} archive is UNAVAILABLE, and nothing is cached: the next listing succeeds`, async () => {
      // A fresh image each time: its manifest cannot be in the cache from an earlier test.
      const fresh = await fake.seedImage({ ...WORKSPACE, [`/workspace/${mode}.txt`]: mode });
      fake.breakBody({ path: `/v1/inspect/${fresh}/archive`, afterBytes: 1024, mode });
      const error = await failure(provider.listFiles({ snapshot: fresh }));
      expect(error).toBeInstanceOf(SandboxError);
      expect((error as SandboxError).code).toBe("UNAVAILABLE");
      const names = (await provider.listFiles({ snapshot: fresh })).map((f) => f.path);
      expect(names).toContain(`${mode}.txt`);
      expect(names).toContain("f7.txt");
      // Both listings went to the service: the failed load was not kept.
      const loads = fake.requests.filter((r) => r.path.startsWith(`/v1/inspect/${fresh}/archive`));
      expect(loads).toHaveLength(2);
    });
  }

  test("reading a file of an image whose archive stalls is UNAVAILABLE, then works", async () => {
    const fresh = await fake.seedImage({ ...WORKSPACE, "/workspace/read.txt": "contents\n" });
    fake.breakBody({ path: `/v1/inspect/${fresh}/archive`, afterBytes: 0, mode: "stall" });
    const error = await failure(provider.readFile({ snapshot: fresh }, "read.txt"));
    expect((error as SandboxError).code).toBe("UNAVAILABLE");
    const bytes = await provider.readFile({ snapshot: fresh }, "read.txt");
    expect(new TextDecoder().decode(bytes!)).toBe("contents\n");
  });
});
