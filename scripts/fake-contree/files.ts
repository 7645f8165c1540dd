// Uploaded files: content-addressed by sha256 and streamed to `<dataDir>/files/<sha256>` (bodies may
// be large binaries, so nothing is held in memory). The same bytes always get the same uuid.
import { createHash, randomUUID } from "node:crypto";
import { createWriteStream } from "node:fs";
import { rename, unlink } from "node:fs/promises";
import { join } from "node:path";
import type { Clock } from "./clock.ts";
import { parseTimeParam } from "./clock.ts";
import { notFound } from "./errors.ts";
import { queryInt } from "./wire.ts";

export interface FileRecord {
  uuid: string;
  sha256: string;
  size: number;
  createdMs: number;
  updatedMs: number;
}

export class FileStore {
  private byHash = new Map<string, FileRecord>();
  private byUuid = new Map<string, FileRecord>();
  private order: string[] = [];
  private tmpSeq = 0;

  constructor(
    readonly dir: string,
    private clock: Clock,
  ) {}

  pathOf(record: FileRecord): string {
    return join(this.dir, record.sha256);
  }

  getByHash(sha256: string): FileRecord {
    const record = this.byHash.get(sha256.toLowerCase());
    if (!record) throw notFound(`file not found: ${sha256}`);
    return record;
  }

  getByUuid(uuid: string): FileRecord | undefined {
    return this.byUuid.get(uuid.toLowerCase());
  }

  toWire(record: FileRecord) {
    return {
      uuid: record.uuid,
      sha256: record.sha256,
      size: record.size,
      created_at: this.clock.iso(record.createdMs),
      updated_at: this.clock.iso(record.updatedMs),
    };
  }

  async upload(body: AsyncIterable<Uint8Array>): Promise<FileRecord> {
    const tmp = join(this.dir, `.upload-${process.pid}-${++this.tmpSeq}`);
    const hash = createHash("sha256");
    let size = 0;
    const out = createWriteStream(tmp);
    const failed = new Promise<never>((_, reject) => out.on("error", reject));
    failed.catch(() => {});
    try {
      for await (const chunk of body) {
        hash.update(chunk);
        size += chunk.byteLength;
        if (!out.write(chunk)) await Promise.race([new Promise((r) => out.once("drain", r)), failed]);
      }
      await Promise.race([new Promise<void>((r) => out.end(r)), failed]);
    } catch (error) {
      out.destroy();
      await unlink(tmp).catch(() => {});
      throw error;
    }
    const sha256 = hash.digest("hex");
    const now = this.clock.now();
    const existing = this.byHash.get(sha256);
    if (existing) {
      await unlink(tmp).catch(() => {});
      existing.updatedMs = now;
      return existing;
    }
    await rename(tmp, join(this.dir, sha256));
    const record: FileRecord = { uuid: randomUUID(), sha256, size, createdMs: now, updatedMs: now };
    this.byHash.set(sha256, record);
    this.byUuid.set(record.uuid, record);
    this.order.push(sha256);
    return record;
  }

  list(query: URLSearchParams) {
    const limit = queryInt(query, "limit", 100, 1, 1000, "limit must be between 1 and 1000");
    const offset = queryInt(query, "offset", 0, 0);
    const now = this.clock.now();
    const since = query.get("since") ? parseTimeParam("since", query.get("since")!, now) : null;
    const until = query.get("until") ? parseTimeParam("until", query.get("until")!, now) : null;
    return this.order
      .map((sha) => this.byHash.get(sha)!)
      .filter((f) => (since === null || f.createdMs >= since) && (until === null || f.createdMs <= until))
      .slice(offset, offset + limit)
      .map((f) => this.toWire(f));
  }
}
