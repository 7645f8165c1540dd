// The contree provider against the fake ConTree service: the same contract every provider owes,
// plus what is particular to microVM images (pending writes ride on the next run, ConTree's refusals
// become typed errors, a flaky service is retried within its contract).
import { afterAll, beforeAll, expect, test } from "bun:test";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { linkSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ContreeClient } from "../../sandbox/contree/client.ts";
import { ContreeProvider } from "../../sandbox/contree/provider.ts";
import { scanTar } from "../../sandbox/contree/tar.ts";
import { type FakeContree, startFakeContree } from "../../scripts/fake-contree/index.ts";
import { skip } from "../utils/isolation.ts";
import { runProviderContract } from "./provider.contract.ts";

const fakes = new Map<ContreeProvider, FakeContree>();

async function contreeProvider(fake: FakeContree, image = "tag:ubuntu:latest"): Promise<ContreeProvider> {
  return new ContreeProvider({
    client: new ContreeClient({
      baseUrl: fake.url,
      token: fake.token,
      project: fake.project,
      retry: { baseDelayMs: 10, maxDelayMs: 200 },
    }),
    image,
    imageSource: `docker://docker.io/library/${image.slice(4)}`,
    network: true,
    limits: { timeoutMs: 60_000, maxOutputBytes: 1024 * 1024 },
    log: () => {},
  });
}

// Every contract step runs commands (even creating a sandbox is a run in a VM).
skip.describeUnlessFakeContreeProcesses("with processes in the fake", () => {
  runProviderContract({
    name: "contree (fake service)",
    deletes: false,
    async newProvider() {
      const fake = await startFakeContree({ delays: { pendingMs: 5, assignedMs: 5 } });
      const provider = await contreeProvider(fake);
      fakes.set(provider, fake);
      return provider;
    },
    async dispose(provider) {
      await provider.close();
      await fakes.get(provider as ContreeProvider)?.close();
    },
  });
});

skip.describeUnlessFakeContreeProcesses("contree: particulars", () => {
  let fake: FakeContree;
  let p: ContreeProvider;
  beforeAll(async () => {
    fake = await startFakeContree({ delays: { pendingMs: 5, assignedMs: 5 } });
    p = await contreeProvider(fake);
  });
  afterAll(async () => {
    await p.close();
    await fake.close();
  });

  const spawns = () => fake.requests.filter((r) => r.method === "POST" && r.path.startsWith("/v1/instances"));

  test("writes wait for the next run (no VM of their own) and are visible meanwhile", async () => {
    const sbx = await p.create({ kind: "files", files: { "a.txt": "a\n" } });
    const before = spawns().length;
    await p.writeFile(sbx, "b.txt", "written\n");
    expect(spawns().length).toBe(before);
    expect(new TextDecoder().decode((await p.readFile({ sandbox: sbx }, "b.txt"))!)).toBe("written\n");
    let out = "";
    await p.exec(sbx, { command: "cat b.txt", onOutput: (c) => (out += new TextDecoder().decode(c.data)) });
    expect(out).toBe("written\n");
    expect(spawns().length).toBe(before + 1);
  });

  test("an unchanged workspace keeps its image: the snapshot is the same UUID", async () => {
    const sbx = await p.create({ kind: "files", files: { "a.txt": "a\n" } });
    const first = await p.snapshot(sbx);
    await p.exec(sbx, { command: "cat a.txt > /dev/null" });
    const second = await p.snapshot(sbx);
    expect(second.id).toBe(first.id);
  });

  test("host binds are refused as UNSUPPORTED; a timeout is reported as one", async () => {
    const sbx = await p.create({ kind: "empty" });
    await expect(
      p.exec(sbx, { command: "true", binds: [{ host: "/etc", sandbox: "/host-etc" }] }),
    ).rejects.toMatchObject({ code: "UNSUPPORTED" });
    const slow = await p.exec(sbx, { command: "sleep 30", timeoutMs: 1000 });
    expect(slow.killedBy).toBe("timeout");
    expect(slow.exitCode).toBeNull();
  });

  test("aborting a run cancels its operation; the sandbox keeps its image", async () => {
    const sbx = await p.create({ kind: "files", files: { "keep.txt": "kept\n" } });
    const controller = new AbortController();
    const running = p.exec(sbx, {
      command: "echo started; sleep 30",
      signal: controller.signal,
      onOutput: () => controller.abort(),
    });
    const result = await running;
    expect(result.killedBy).toBe("abort");
    expect(new TextDecoder().decode((await p.readFile({ sandbox: sbx }, "keep.txt"))!)).toBe("kept\n");
    const cancels = fake.requests.filter(
      (r) => r.method === "DELETE" && r.path.startsWith("/v1/operations/"),
    );
    expect(cancels.length).toBeGreaterThanOrEqual(1);
  });

  test("a 500 storm on reads is retried; 425 at spawn is retried without a second VM", async () => {
    const sbx = await p.create({ kind: "files", files: { "x.txt": "x\n" } });
    const snap = await p.snapshot(sbx);
    fake.fail({ method: "GET", path: /\/inspect\/.*\/download$/, status: 500, times: 3 });
    expect(new TextDecoder().decode((await p.readFile({ snapshot: snap.id }, "x.txt"))!)).toBe("x\n");
    fake.fail({ method: "POST", path: "/v1/instances", status: 425, retryAfter: 0, times: 1 });
    const before = spawns().length;
    await p.exec(sbx, { command: "echo again > y.txt" });
    expect(spawns().length).toBe(before + 2); // the refused attempt and the one that ran
    const ops = fake.requests.filter((r) => r.method === "GET" && /\/v1\/operations\/[^/]+$/.test(r.path));
    expect(ops.length).toBeGreaterThan(0);
  });

  test("a base image tag a fresh account lacks is imported once, then used", async () => {
    const fresh = await contreeProvider(fake, "tag:debian:12");
    const before = fake.requests.filter((r) => r.path.startsWith("/v1/images/import")).length;
    const [a, b] = await Promise.all([fresh.create({ kind: "empty" }), fresh.create({ kind: "empty" })]);
    expect(a).not.toBe(b);
    expect(fake.requests.filter((r) => r.path.startsWith("/v1/images/import")).length).toBe(before + 1);
    const res = await fetch(`${fake.url}/v1/images?tag=debian:12`, {
      headers: { authorization: `Bearer ${fake.token}`, ...(fake.project ? { project: fake.project } : {}) },
    });
    expect(((await res.json()) as { images: unknown[] }).images.length).toBe(1);
    await fresh.close();
  });

  test("the output cap covers both streams and stops the run; longer timeouts than ConTree's are clamped", async () => {
    const sbx = await p.create({ kind: "empty" });
    let seen = 0;
    const capped = await p.exec(sbx, {
      command: "yes out | head -c 3000; yes err | head -c 3000 >&2; sleep 20",
      maxOutputBytes: 1000,
      onOutput: (c) => {
        seen += c.data.byteLength;
      },
    });
    expect(capped.killedBy).toBe("output");
    expect(seen).toBeLessThanOrEqual(1000);
    // Asking for two hours is not refused by ConTree's 1-hour cap: the run gets what is allowed.
    const long = await p.exec(sbx, { command: "true", timeoutMs: 2 * 3600_000 });
    expect(long.exitCode).toBe(0);
  });

  test("a 500 on spawn is not replayed: the run fails as UNAVAILABLE", async () => {
    const sbx = await p.create({ kind: "empty" });
    fake.fail({ method: "POST", path: "/v1/instances", status: 500, times: 1 });
    const before = spawns().length;
    await expect(p.exec(sbx, { command: "true" })).rejects.toMatchObject({ code: "UNAVAILABLE" });
    expect(spawns().length).toBe(before + 1);
  });
});

test("the tar reader streams: hard links are files with their content, chunks may split anywhere", async () => {
  const dir = mkdtempSync(join(tmpdir(), "occ-tar-"));
  try {
    writeFileSync(join(dir, "a.txt"), "shared\n");
    linkSync(join(dir, "a.txt"), join(dir, "b.txt")); // GNU and Python tar write these as links
    const big = Buffer.alloc(700_001, "z");
    writeFileSync(join(dir, `${"long-name-".repeat(12)}.bin`), big);
    const archive = new Uint8Array(execFileSync("tar", ["--format=pax", "-cf", "-", "-C", dir, "."]));
    // Delivered in odd-sized pieces, as a network stream would.
    async function* pieces() {
      for (let at = 0; at < archive.length; at += 777) yield archive.subarray(at, at + 777);
    }
    const files: Record<string, [number, string]> = {};
    for await (const e of scanTar(pieces())) if (e.type === "file") files[e.name] = [e.size, e.sha256];
    const sha = (data: string | Buffer) => createHash("sha256").update(data).digest("hex");
    expect(files).toEqual({
      "a.txt": [7, sha("shared\n")],
      "b.txt": [7, sha("shared\n")],
      [`${"long-name-".repeat(12)}.bin`]: [700_001, sha(big)],
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
