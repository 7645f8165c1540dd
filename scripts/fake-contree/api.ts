// The handlers of the 24 operations: permissions, request validation, and the reply of each route
// (status codes, bodies, Location headers, SSE and file/tar streams).
//
// Permissions: GETs need `list`; tags `set_image_tag`; import `import`; cancel `cancel`; a disposable
// spawn `spawn` or `spawn_disposable`, a non-disposable one `spawn`; uploads and subprocess calls
// (create, kill, stdin) need `spawn` or `spawn_disposable`. `whoami` needs none.
import { randomUUID } from "node:crypto";
import { createReadStream } from "node:fs";
import type { Clock } from "./clock.ts";
import { ApiError, badRequest, notFound, tooEarly } from "./errors.ts";
import { streamEvents } from "./events.ts";
import type { Faults } from "./faults.ts";
import type { FileStore } from "./files.ts";
import { type ImageStore, validateTag } from "./images.ts";
import type { ContreePermission } from "./index.ts";
import { archive, fileForDownload, grep, listDirectory } from "./inspect.ts";
import type { Operations } from "./operations.ts";
import type { RouteName } from "./routes.ts";
import type { Reply, RequestContext } from "./server.ts";
import { DEFAULT_CWD, type Limits, parseExec, parseSpawn } from "./spawn.ts";
import { decodeStream, isObject, optInt } from "./wire.ts";

export interface ApiContext {
  clock: Clock;
  images: ImageStore;
  files: FileStore;
  ops: Operations;
  faults: Faults;
  limits: Limits;
  permissions: Record<ContreePermission, boolean>;
  goneAfterCompletionMs: number;
  keepaliveMs: number;
  isClosing(): boolean;
}

const DEFAULT_IMPORT_TIMEOUT = 300;

export function createApi(ctx: ApiContext): (req: RequestContext) => Promise<Reply> {
  const tokenUuid = randomUUID();
  const need = (...any: ContreePermission[]) => {
    if (!any.some((p) => ctx.permissions[p])) {
      throw new ApiError(403, `Insufficient permissions: ${any.join(" or ")}`);
    }
  };
  const imageRoot = (uuid: string) => ctx.images.dirOf(ctx.images.mustGet(uuid).uuid);
  const location = (opUuid: string) => ({ Location: `/v1/operations/${opUuid}` });

  const handlers: Record<RouteName, (req: RequestContext) => Promise<Reply>> = {
    async whoami() {
      return {
        status: 200,
        json: {
          token_uuid: tokenUuid,
          token_expiration: Math.floor(ctx.clock.now() / 1000) + 300,
          permissions: { ...ctx.permissions },
          limits: { ...ctx.limits },
          operations_stat: ctx.ops.stats(),
        },
      };
    },

    async listImages({ query }) {
      need("list");
      return { status: 200, json: { images: ctx.images.list(query) } };
    },

    async updateImageTag({ params, json }) {
      need("set_image_tag");
      const body = await json();
      if (!isObject(body)) throw badRequest("request body must be a JSON object with a tag");
      const tag = validateTag(body.tag);
      return { status: 200, json: ctx.images.toWire(ctx.images.setTag(params.uuid!, tag)) };
    },

    async deleteImageTag({ params, query }) {
      need("set_image_tag");
      ctx.images.deleteTag(params.uuid!, query.get("tag"));
      return { status: 204 };
    },

    async importImage({ json }) {
      need("import");
      const body = await json();
      if (!isObject(body)) throw badRequest("request body must be a JSON object");
      const registry = body.registry;
      if (!isObject(registry) || typeof registry.url !== "string" || !registry.url) {
        throw badRequest("registry.url is required");
      }
      const tag = body.tag === undefined || body.tag === null ? null : validateTag(body.tag);
      const timeout = optInt(body, "timeout", 1) ?? DEFAULT_IMPORT_TIMEOUT;
      if (timeout > ctx.limits.images_import_max_timeout) {
        throw badRequest(`timeout must not exceed ${ctx.limits.images_import_max_timeout} seconds`);
      }
      const credentials = isObject(registry.credentials)
        ? {
            username: registry.credentials.username ?? null,
            password: registry.credentials.password ? "***" : null,
          }
        : null;
      const op = ctx.ops.importImage(registry.url, tag, timeout, {
        registry: { url: registry.url, credentials },
        tag,
        timeout,
      });
      return { status: 201, headers: location(op.uuid), json: { uuid: op.uuid } };
    },

    async listFiles({ query }) {
      need("list");
      return { status: 200, json: { files: ctx.files.list(query) } };
    },

    async uploadFile({ body }) {
      need("spawn", "spawn_disposable");
      const record = await ctx.files.upload(body);
      return { status: 201, json: { uuid: record.uuid, sha256: record.sha256, size: record.size } };
    },

    async getFile({ params }) {
      need("list");
      return { status: 200, json: ctx.files.toWire(ctx.files.getByHash(params.sha256!)) };
    },

    async checkFile({ params }) {
      need("list");
      ctx.files.getByHash(params.sha256!);
      return { status: 200 };
    },

    async spawnInstance({ json }) {
      const body = await json();
      if (!isObject(body)) throw badRequest("request body must be a JSON object");
      if (body.disposable === true) need("spawn", "spawn_disposable");
      else need("spawn");
      const spec = parseSpawn(body, ctx.images, ctx.files, ctx.limits);
      const op = ctx.ops.spawnInstance(spec, body);
      return { status: 201, headers: location(op.uuid), json: { uuid: op.uuid, ...body, result: null } };
    },

    async listOperations({ query }) {
      need("list");
      return { status: 200, json: ctx.ops.list(query) };
    },

    async getOperation({ params, query }) {
      need("list");
      const op = ctx.ops.get(params.id!);
      const inflight = ["1", "true", "yes"].includes((query.get("inflight") ?? "").toLowerCase());
      return { status: 200, json: ctx.ops.response(op, inflight) };
    },

    async cancelOperation({ params }) {
      need("cancel");
      ctx.ops.cancel(ctx.ops.get(params.id!));
      return { status: 202 };
    },

    async operationEvents({ params, query, headers }) {
      need("list");
      const op = ctx.ops.get(params.id!);
      const log = op.log;
      if (!log) throw tooEarly("operation events are not available yet");
      if (ctx.goneAfterCompletionMs > 0 && log.completed) {
        const left = log.completedAt + ctx.goneAfterCompletionMs - ctx.clock.now();
        if (left > 0)
          throw new ApiError(410, "operation finished; events not yet durable", Math.ceil(left / 1000));
      }
      const int = (raw: string | null | undefined, name: string): number | null => {
        if (raw === null || raw === undefined || raw === "") return null;
        if (!/^-?\d+$/.test(raw.trim())) throw badRequest(`${name} must be an integer`);
        return Number(raw);
      };
      const lastEventId = headers["last-event-id"];
      const since = Math.max(
        int(query.get("since"), "since") ?? -1,
        int(Array.isArray(lastEventId) ? lastEventId[0] : lastEventId, "Last-Event-Id") ?? -1,
      );
      const spid = int(query.get("spid"), "spid");
      const follow = ["1", "true", "yes"].includes((query.get("follow") ?? "").toLowerCase());
      const reserved = ctx.faults.reserveStream(op.uuid);
      return {
        status: 200,
        contentType: "text/event-stream",
        headers: { "Cache-Control": "no-cache", "X-Accel-Buffering": "no" },
        stream: async (out) => {
          try {
            await streamEvents(log, out, {
              since,
              spid,
              follow,
              keepaliveMs: ctx.keepaliveMs,
              fault: reserved
                ? {
                    afterEvents: reserved.fault.afterEvents,
                    mode: reserved.fault.mode,
                    fired: () => reserved.release(true),
                  }
                : null,
              isClosing: ctx.isClosing,
            });
          } finally {
            reserved?.release(false);
          }
        },
      };
    },

    async createSubprocess({ params, json }) {
      need("spawn", "spawn_disposable");
      const op = ctx.ops.get(params.id!);
      const exec = parseExec(await json(), { cwd: DEFAULT_CWD });
      const spid = await ctx.ops.createSubprocess(op, exec);
      return { status: 201, json: { spid } };
    },

    async getSubprocess({ params }) {
      need("list");
      const op = ctx.ops.get(params.id!);
      return { status: 200, json: ctx.ops.process(op, params.spid!).result() };
    },

    async killSubprocess({ params, query }) {
      need("spawn", "spawn_disposable");
      ctx.ops.kill(ctx.ops.get(params.id!), params.spid!, query.get("signal"));
      return { status: 204 };
    },

    async subprocessStdin({ params, json }) {
      need("spawn", "spawn_disposable");
      const op = ctx.ops.get(params.id!);
      ctx.ops.process(op, params.spid!);
      const { bytes, close } = decodeStream(await json(), "stdin");
      ctx.ops.stdin(op, params.spid!, bytes, close ?? false);
      return { status: 204 };
    },

    async inspectByTag({ query }) {
      need("list");
      const tag = query.get("tag");
      if (!tag) throw badRequest("tag is required");
      const image = ctx.images.byTag(tag);
      if (!image) throw notFound(`no image tagged ${JSON.stringify(tag)}`);
      return { status: 302, headers: { Location: `${image.uuid}/` } };
    },

    async inspectImage({ params }) {
      need("list");
      return { status: 200, json: ctx.images.toWire(ctx.images.mustGet(params.uuid!)) };
    },

    async inspectList({ params, query }) {
      need("list");
      const listing = await listDirectory(imageRoot(params.uuid!), query);
      return listing.text !== undefined
        ? { status: 200, text: listing.text }
        : { status: 200, json: listing.json };
    },

    async inspectDownload({ params, query }) {
      need("list");
      const file = await fileForDownload(imageRoot(params.uuid!), query);
      return {
        status: 200,
        contentType: "application/octet-stream",
        headers: { "Content-Length": String(file.size) },
        stream: async (out) => {
          for await (const chunk of createReadStream(file.host, { highWaterMark: 64 * 1024 })) {
            if (!(await out.write(chunk as Buffer))) return;
          }
        },
      };
    },

    async inspectCheckFile({ params, query }) {
      need("list");
      const file = await fileForDownload(imageRoot(params.uuid!), query);
      return {
        status: 200,
        headers: { "Content-Length": String(file.size) },
        contentType: "application/octet-stream",
      };
    },

    async inspectArchive({ params, query }) {
      need("list");
      const chunks = await archive(imageRoot(params.uuid!), query);
      return {
        status: 200,
        contentType: "application/x-tar",
        stream: async (out) => {
          for await (const chunk of chunks) if (!(await out.write(chunk))) return;
        },
      };
    },

    async inspectCheckArchive({ params, query }) {
      need("list");
      await archive(imageRoot(params.uuid!), query);
      return { status: 200, contentType: "application/x-tar" };
    },

    async inspectGrep({ params, query }) {
      need("list");
      return { status: 200, json: await grep(imageRoot(params.uuid!), query) };
    },
  };

  return (req) => handlers[req.route.name](req);
}
