// Images: immutable root filesystems on disk (`<dataDir>/images/<uuid>/`) with their metadata in
// memory: uuid, tag, created_at, operation_uuid, the parent image (not on the wire) and the
// environment baked in by `preserve_env`. One tag names one image; tagging another image moves it.
import { randomUUID } from "node:crypto";
import { chmod, mkdir, rename, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { Clock } from "./clock.ts";
import { parseTimeParam } from "./clock.ts";
import { badRequest, conflict, notFound } from "./errors.ts";
import { resolveInRoot } from "./tree.ts";
import { queryInt } from "./wire.ts";

export interface ImageRecord {
  uuid: string;
  tag: string | null;
  createdMs: number;
  operation_uuid: string | null;
  /** The image this one was made from (null for seeds and imports). */
  parent: string | null;
  /** Environment inherited by every run on this image (`preserve_env`). */
  env: Record<string, string>;
}

export interface WireImage {
  uuid: string;
  tag: string | null;
  created_at: string;
  operation_uuid: string | null;
}

const TAG_RE = /^[A-Za-z0-9][A-Za-z0-9._\-/:@+]{0,254}$/;
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function validateTag(tag: unknown): string {
  if (typeof tag !== "string" || !TAG_RE.test(tag)) throw badRequest(`invalid tag: ${JSON.stringify(tag)}`);
  return tag;
}

/** The skeleton every seed and imported image starts from. */
export const SKELETON_DIRS: Record<string, number> = {
  "/root": 0o700,
  "/tmp": 0o1777,
  "/workspace": 0o755,
  "/etc": 0o755,
  "/home": 0o755,
};

export function skeletonFiles(name: string): Record<string, string> {
  return {
    "/etc/hostname": "linuxkit\n",
    "/etc/passwd":
      "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
    "/etc/group": "root:x:0:\nnogroup:x:65534:\n",
    "/etc/os-release": `NAME="${name} (fake-contree skeleton)"\nID=fake-contree\n`,
  };
}

export class ImageStore {
  private images = new Map<string, ImageRecord>();
  private order: string[] = [];

  constructor(
    readonly dir: string,
    private clock: Clock,
  ) {}

  dirOf(uuid: string): string {
    return join(this.dir, uuid);
  }

  get(uuid: string): ImageRecord | undefined {
    return this.images.get(uuid);
  }

  mustGet(uuid: string): ImageRecord {
    const image = UUID_RE.test(uuid) ? this.images.get(uuid.toLowerCase()) : undefined;
    if (!image) throw notFound(`image not found: ${uuid}`);
    return image;
  }

  byTag(tag: string): ImageRecord | undefined {
    for (const image of this.images.values()) if (image.tag === tag) return image;
    return undefined;
  }

  /** A spawn's `image`: a UUID or `tag:NAME`; 404 when nothing matches. */
  resolveRef(ref: string): ImageRecord {
    if (ref.startsWith("tag:")) {
      const image = this.byTag(ref.slice(4));
      if (!image) throw notFound(`image not found: ${ref}`);
      return image;
    }
    return this.mustGet(ref);
  }

  toWire(image: ImageRecord): WireImage {
    return {
      uuid: image.uuid,
      tag: image.tag,
      created_at: this.clock.iso(image.createdMs),
      operation_uuid: image.operation_uuid,
    };
  }

  /** Registers an image whose directory already exists at `dirOf(uuid)`. */
  register(record: Omit<ImageRecord, "createdMs" | "tag">, tag?: string | null): ImageRecord {
    const image: ImageRecord = { ...record, tag: null, createdMs: this.clock.now() };
    this.images.set(image.uuid, image);
    this.order.push(image.uuid);
    if (tag) this.setTag(image.uuid, tag);
    return image;
  }

  /** Moves a finished working tree into the store as a new image. */
  async adopt(
    workDir: string,
    record: Omit<ImageRecord, "createdMs" | "tag" | "uuid">,
  ): Promise<ImageRecord> {
    const uuid = randomUUID();
    await rename(workDir, this.dirOf(uuid));
    return this.register({ ...record, uuid });
  }

  /** A new image from a map of absolute path → content, on top of the skeleton. */
  async create(
    files: Record<string, string | Uint8Array>,
    options: { tag?: string | null; operation_uuid?: string | null; name?: string } = {},
  ): Promise<ImageRecord> {
    const uuid = randomUUID();
    const root = this.dirOf(uuid);
    await mkdir(root, { recursive: true });
    for (const [dir, mode] of Object.entries(SKELETON_DIRS)) {
      await mkdir(join(root, dir), { recursive: true });
      await chmod(join(root, dir), mode);
    }
    const all: Record<string, string | Uint8Array> = { ...skeletonFiles(options.name ?? "image"), ...files };
    for (const [path, content] of Object.entries(all)) {
      if (!path.startsWith("/")) throw new Error(`seed paths must be absolute: ${path}`);
      const target = await resolveInRoot(root, path, { allowMissing: true, followLast: false });
      await mkdir(dirname(target.host), { recursive: true });
      await writeFile(target.host, content);
    }
    return this.register(
      { uuid, operation_uuid: options.operation_uuid ?? null, parent: null, env: {} },
      options.tag,
    );
  }

  setTag(uuid: string, tag: string): ImageRecord {
    const image = this.mustGet(uuid);
    for (const other of this.images.values()) if (other.tag === tag && other !== image) other.tag = null;
    image.tag = tag;
    return image;
  }

  deleteTag(uuid: string, tag: string | null): void {
    const image = this.mustGet(uuid);
    if (image.tag === null) throw conflict(`image ${uuid} has no tag`);
    if (tag !== null && image.tag !== tag)
      throw conflict(`image ${uuid} is not tagged ${JSON.stringify(tag)}`);
    image.tag = null;
  }

  list(query: URLSearchParams): WireImage[] {
    const limit = queryInt(query, "limit", 100, 1, 1000, "limit must be between 1 and 1000");
    const offset = queryInt(query, "offset", 0, 0);
    const now = this.clock.now();
    const since = query.get("since") ? parseTimeParam("since", query.get("since")!, now) : null;
    const until = query.get("until") ? parseTimeParam("until", query.get("until")!, now) : null;
    const tagged = ["1", "true", "yes"].includes((query.get("tagged") ?? "").toLowerCase());
    const tag = query.get("tag");
    const uuid = query.get("uuid");
    return this.order
      .map((id) => this.images.get(id)!)
      .filter(
        (image) =>
          (!tagged || image.tag !== null) &&
          (!tag || (image.tag ?? "").startsWith(tag)) &&
          (!uuid || image.uuid === uuid.toLowerCase()) &&
          (since === null || image.createdMs >= since) &&
          (until === null || image.createdMs <= until),
      )
      .slice(offset, offset + limit)
      .map((image) => this.toWire(image));
  }
}
