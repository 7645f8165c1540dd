// The typed ConTree client: one method per API operation (contree-api.md §2, 24 operations under
// /v1) plus the helpers a sandbox provider needs — content-addressed uploads, image refs, waiting
// on operations through the resuming event stream (polling when there is none), run-to-completion
// and kept-alive VMs. Retries follow retry.ts; every failure is a ContreeError (errors.ts).

import { decodeStreamRepr, formatTimeParam, isUuid, sha256Hex, toBytes, wireNumber } from "./encoding.ts";
import {
  ContreeAbortedError,
  ContreeConflictError,
  ContreeError,
  ContreeEventsUnavailableError,
  ContreeNotFoundError,
  ContreeProtocolError,
} from "./errors.ts";
import { LiveInstance } from "./instance.ts";
import { type RetryOptions, resolveRetry, sleep } from "./retry.ts";
import { resumingEvents } from "./sse.ts";
import { type QueryValue, type RequestSpec, Transport } from "./transport.ts";
import {
  type ClosableStreamRepr,
  type DirectoryList,
  type EventsQuery,
  type ExecSpec,
  type File,
  type FileList,
  type FileListQuery,
  type FileRef,
  type GrepQuery,
  type GrepResult,
  type Image,
  type ImageImportRequest,
  type ImageList,
  type ImageListQuery,
  type InstanceMetadata,
  type InstanceResult,
  type InstanceSpawnRequest,
  type InstanceSpawnResponse,
  isTerminalStatus,
  type OperationEvent,
  type OperationListQuery,
  type OperationResponse,
  type OperationSummary,
  type SubprocessCreated,
  type TimeParam,
  type WhoAmI,
} from "./types.ts";

export interface ContreeClientOptions {
  /** Service root without `/v1`, e.g. `https://api.tokenfactory.nebius.com/sandboxes`. */
  baseUrl: string;
  /** Sent as `Authorization: Bearer <token>`. */
  token: string;
  /** Sent as the `Project` header when set (required by the IAM deployment). */
  project?: string | null;
  fetch?: typeof fetch;
  retry?: RetryOptions;
  userAgent?: string;
  /** Fallback polling of GET /operations/{id} when there is no event stream. Default 500 ms doubling to 5 s. */
  poll?: { initialMs?: number; maxMs?: number };
  /** Told when an operation's event stream failed for good and waiting fell back to polling. */
  onStreamLost?: (operationId: string, error: unknown) => void;
  /**
   * Longest silence of a streamed body (archive, event stream) while it is being read; then it
   * fails with ContreeStreamStalledError (an event stream reconnects). Default 30 s. The event
   * stream's `: keepalive` comments count as traffic.
   */
  streamIdleMs?: number;
}

export interface CallOptions {
  signal?: AbortSignal;
}

export interface WaitOptions extends CallOptions {
  /** Every event of the operation, in order, exactly once (not called when falling back to polling). */
  onEvent?: (event: OperationEvent) => void;
  /** Follow only this process's events (e.g. 1, the main process) instead of the whole log. */
  spid?: number;
}

export interface RunResult {
  operation: OperationResponse;
  status: string;
  /** null while unknown, when killed by a signal, or on timeout (the server reports −1). */
  exitCode: number | null;
  /** Signal number that ended the main process, or null. */
  signal: number | null;
  timedOut: boolean;
  /** result_image_uuid; null for disposable runs and failed/cancelled operations. */
  resultImage: string | null;
  stdout: string;
  stderr: string;
  /** stdout or stderr hit `truncate_output_at`. */
  truncated: boolean;
}

/** A spawn request for a kept-alive VM: the main process is ours; `timeout` is the VM lifetime (s). */
export type StartInstanceRequest = Omit<InstanceSpawnRequest, "command" | "args" | "shell" | "timeout"> & {
  timeout: number;
};

const TEXT = new TextDecoder();
const REDIRECTS = [301, 302, 303, 307, 308] as const;

function timeQuery(q: { since?: TimeParam; until?: TimeParam }): Record<string, QueryValue> {
  return {
    since: q.since === undefined ? undefined : formatTimeParam(q.since),
    until: q.until === undefined ? undefined : formatTimeParam(q.until),
  };
}

function seg(value: string | number): string {
  return encodeURIComponent(String(value));
}

export class ContreeClient {
  readonly transport: Transport;
  /** Fallback polling: first delay and cap. */
  readonly pollInitialMs: number;
  readonly pollMaxMs: number;
  private readonly onStreamLost: ContreeClientOptions["onStreamLost"];

  constructor(options: ContreeClientOptions) {
    const runtime = typeof navigator !== "undefined" ? ` ${navigator.userAgent}` : "";
    this.transport = new Transport({
      baseUrl: options.baseUrl,
      token: options.token,
      project: options.project ?? null,
      userAgent: options.userAgent ?? `opencode-cloud-contree/0.1${runtime}`,
      fetch: options.fetch ?? globalThis.fetch,
      retry: resolveRetry(options.retry),
      streamIdleMs: options.streamIdleMs,
    });
    this.onStreamLost = options.onStreamLost;
    this.pollInitialMs = options.poll?.initialMs ?? 500;
    this.pollMaxMs = options.poll?.maxMs ?? 5000;
  }

  private json<T>(spec: RequestSpec): Promise<T> {
    return this.transport.json<T>(spec);
  }

  // ---- 1 whoami ---------------------------------------------------------------------------

  whoami(options: CallOptions = {}): Promise<WhoAmI> {
    return this.json({ method: "GET", path: "/whoami", signal: options.signal });
  }

  // ---- 2–5 images ---------------------------------------------------------------------------

  /** GET /images → the `images` array. */
  async listImages(query: ImageListQuery = {}, options: CallOptions = {}): Promise<Image[]> {
    const list = await this.json<ImageList>({
      method: "GET",
      path: "/images",
      query: {
        limit: query.limit,
        offset: query.offset,
        tagged: query.tagged,
        tag: query.tag,
        uuid: query.uuid,
        ...timeQuery(query),
      },
      signal: options.signal,
    });
    return list.images;
  }

  /** PATCH /images/{uuid}/tag: points `tag` at this image (moving it from any other). */
  tagImage(uuid: string, tag: string, options: CallOptions = {}): Promise<Image> {
    return this.json({
      method: "PATCH",
      path: `/images/${seg(uuid)}/tag`,
      json: { tag },
      // "tag := this image" has the same outcome however often it is applied.
      idempotent: true,
      signal: options.signal,
    });
  }

  /** DELETE /images/{uuid}/tag?tag=. */
  async untagImage(uuid: string, tag: string, options: CallOptions = {}): Promise<void> {
    await this.transport.empty({
      method: "DELETE",
      path: `/images/${seg(uuid)}/tag`,
      query: { tag },
      signal: options.signal,
    });
  }

  /** POST /images/import → the import operation's id (from the body, else from Location). */
  importImage(request: ImageImportRequest, options: CallOptions = {}): Promise<{ uuid: string }> {
    return this.transport.send(
      { method: "POST", path: "/images/import", json: request, signal: options.signal },
      async (res) => ({ uuid: await operationIdOf(res, "/v1/images/import") }),
    );
  }

  // ---- 6–9 files ----------------------------------------------------------------------------

  async listFiles(query: FileListQuery = {}, options: CallOptions = {}): Promise<File[]> {
    const list = await this.json<FileList>({
      method: "GET",
      path: "/files",
      query: { limit: query.limit, offset: query.offset, ...timeQuery(query) },
      signal: options.signal,
    });
    return list.files;
  }

  /**
   * POST /files with the raw bytes. Byte bodies are replayed on 5xx/network errors (uploads are
   * content-addressed: the same bytes give the same file); a ReadableStream body is sent once.
   */
  uploadFile(
    data: Uint8Array | ArrayBuffer | string | ReadableStream<Uint8Array>,
    options: CallOptions = {},
  ): Promise<FileRef> {
    const body = data instanceof ReadableStream ? data : toBytes(data);
    return this.json({ method: "POST", path: "/files", body, idempotent: true, signal: options.signal });
  }

  getFile(sha256: string, options: CallOptions = {}): Promise<File> {
    return this.json({ method: "GET", path: `/files/${seg(sha256)}`, signal: options.signal });
  }

  async hasFile(sha256: string, options: CallOptions = {}): Promise<boolean> {
    const res = await this.transport.empty({
      method: "HEAD",
      path: `/files/${seg(sha256)}`,
      accept3xx4xx: [404],
      signal: options.signal,
    });
    return res.status !== 404;
  }

  // ---- 10–14 instances and operations ---------------------------------------------------------

  /** POST /instances. Replayed only on 425/429 (never on 5xx/network: that could start a second VM). */
  spawn(request: InstanceSpawnRequest, options: CallOptions = {}): Promise<InstanceSpawnResponse> {
    return this.transport.send(
      { method: "POST", path: "/instances", json: request, signal: options.signal },
      async (res) => {
        const text = await res.text();
        const body = (text ? parseJson(text, "/v1/instances") : {}) as Partial<InstanceSpawnResponse>;
        const uuid =
          typeof body.uuid === "string" ? body.uuid : operationIdFromLocation(res, "/v1/instances");
        return { ...body, uuid };
      },
    );
  }

  /** GET /operations (a bare array on the wire). */
  listOperations(query: OperationListQuery = {}, options: CallOptions = {}): Promise<OperationSummary[]> {
    return this.json({
      method: "GET",
      path: "/operations",
      query: {
        limit: query.limit,
        offset: query.offset,
        status: query.status,
        kind: query.kind,
        ...timeQuery(query),
      },
      signal: options.signal,
    });
  }

  getOperation(id: string, options: CallOptions & { inflight?: boolean } = {}): Promise<OperationResponse> {
    return this.json({
      method: "GET",
      path: `/operations/${seg(id)}`,
      query: { inflight: options.inflight },
      signal: options.signal,
    });
  }

  /**
   * DELETE /operations/{id} (202). 409 = not cancellable (already terminal). When an earlier
   * attempt of this same call may have gone through (lost response, then retry), a 409 on the
   * retry is taken as success.
   */
  async cancelOperation(id: string, options: CallOptions = {}): Promise<void> {
    try {
      await this.transport.empty({
        method: "DELETE",
        path: `/operations/${seg(id)}`,
        signal: options.signal,
      });
    } catch (err) {
      if (err instanceof ContreeConflictError && err.attempts > 1) return;
      throw err;
    }
  }

  /**
   * GET /operations/{id}/events as a resuming iterator (see sse.ts): reconnects with Last-Event-Id
   * after drops, truncation, `sse_error` and 410/425, delivering each event once, in order. With
   * `follow` and no `spid` it ends after `completion`. Throws ContreeEventsUnavailableError when
   * the route is missing (fall back to polling).
   */
  events(id: string, query: EventsQuery & CallOptions = {}): AsyncGenerator<OperationEvent, void> {
    const { signal } = query;
    return resumingEvents({
      follow: query.follow ?? false,
      since: query.since,
      stopAtCompletion: (query.follow ?? false) && query.spid === undefined,
      retry: this.transport.options.retry,
      signal,
      isTerminal: async () => isTerminalStatus((await this.getOperation(id, { signal })).status),
      connect: (cursor, follow) =>
        this.transport.send(
          {
            method: "GET",
            path: `/operations/${seg(id)}/events`,
            query: { follow, spid: query.spid, since: cursor ?? undefined },
            headers: cursor === null ? {} : { "Last-Event-Id": String(cursor) },
            accept: "text/event-stream",
            stream: true,
            signal,
          },
          async (res) => {
            if (!res.body) throw new ContreeProtocolError("event stream response has no body");
            return res.body;
          },
        ),
    });
  }

  // ---- 15–18 subprocesses of a live instance ------------------------------------------------

  /** POST /operations/{id}/subprocesses → spid (≥ 2). 425 while the guest is not ready is retried. */
  async createSubprocess(
    operationId: string,
    spec: ExecSpec,
    options: CallOptions = {},
  ): Promise<{ spid: number }> {
    const created = await this.json<SubprocessCreated>({
      method: "POST",
      path: `/operations/${seg(operationId)}/subprocesses`,
      json: spec,
      signal: options.signal,
    });
    if (typeof created.spid !== "number") throw new ContreeProtocolError("subprocess response has no spid");
    return { spid: created.spid };
  }

  /** Folded state of a subprocess (exit_code and signal read −1 while it runs). */
  getSubprocess(operationId: string, spid: number, options: CallOptions = {}): Promise<InstanceResult> {
    return this.json({
      method: "GET",
      path: `/operations/${seg(operationId)}/subprocesses/${seg(spid)}`,
      signal: options.signal,
    });
  }

  /** DELETE …/subprocesses/{spid}?signal= (e.g. "TERM", "KILL", "SIGINT"); spid 1 is the main process. */
  async killSubprocess(
    operationId: string,
    spid: number,
    signal?: string,
    options: CallOptions = {},
  ): Promise<void> {
    await this.transport.empty({
      method: "DELETE",
      path: `/operations/${seg(operationId)}/subprocesses/${seg(spid)}`,
      query: { signal },
      signal: options.signal,
    });
  }

  /** POST …/stdin. Never replayed after 5xx/network errors: that could duplicate input. */
  async writeStdin(
    operationId: string,
    spid: number,
    chunk: ClosableStreamRepr,
    options: CallOptions = {},
  ): Promise<void> {
    await this.transport.empty({
      method: "POST",
      path: `/operations/${seg(operationId)}/subprocesses/${seg(spid)}/stdin`,
      json: chunk,
      signal: options.signal,
    });
  }

  // ---- 19–24 inspect ----------------------------------------------------------------------------

  /** GET /inspect/?tag= → the image UUID from the 302 `Location: {uuid}/` (relative to /v1/inspect/). */
  resolveTag(tag: string, options: CallOptions = {}): Promise<string> {
    return this.transport.send(
      {
        method: "GET",
        path: "/inspect/",
        query: { tag },
        redirect: "manual",
        accept3xx4xx: REDIRECTS,
        signal: options.signal,
      },
      async (res) => {
        const location = res.headers.get("location");
        if (location) {
          await res.body?.cancel().catch(() => {});
          const url = new URL(location, this.transport.url("/v1/inspect/"));
          const match = /\/inspect\/([^/]+)\/?$/.exec(url.pathname);
          if (match?.[1]) return decodeURIComponent(match[1]);
          throw new ContreeProtocolError(`unexpected tag redirect: ${location}`);
        }
        // a proxy that followed the redirect for us: the body is the Image
        const image = (await res.json()) as Partial<Image>;
        if (typeof image.uuid === "string") return image.uuid;
        throw new ContreeProtocolError("tag lookup answered without Location or image");
      },
    );
  }

  inspectImage(uuid: string, options: CallOptions = {}): Promise<Image> {
    return this.json({ method: "GET", path: `/inspect/${seg(uuid)}/`, signal: options.signal });
  }

  /** GET /inspect/{uuid}/list?path=; with `text: true` the `ls -l`-like text variant. */
  listDirectory(uuid: string, path: string, options?: CallOptions & { text?: false }): Promise<DirectoryList>;
  listDirectory(uuid: string, path: string, options: CallOptions & { text: true }): Promise<string>;
  listDirectory(
    uuid: string,
    path: string,
    options: CallOptions & { text?: boolean } = {},
  ): Promise<DirectoryList | string> {
    const spec: RequestSpec = {
      method: "GET",
      path: `/inspect/${seg(uuid)}/list`,
      query: { path, text: options.text },
      signal: options.signal,
    };
    if (options.text) return this.transport.send({ ...spec, accept: "text/plain" }, (res) => res.text());
    return this.json(spec);
  }

  /** GET /inspect/{uuid}/download?path= → the file's exact bytes. */
  download(uuid: string, path: string, options: CallOptions = {}): Promise<Uint8Array> {
    return this.transport.send(
      {
        method: "GET",
        path: `/inspect/${seg(uuid)}/download`,
        query: { path },
        accept: "application/octet-stream",
        signal: options.signal,
      },
      async (res) => new Uint8Array(await res.arrayBuffer()),
    );
  }

  /** HEAD /inspect/{uuid}/download?path= → whether the file exists in the image. */
  async fileExists(uuid: string, path: string, options: CallOptions = {}): Promise<boolean> {
    const res = await this.transport.empty({
      method: "HEAD",
      path: `/inspect/${seg(uuid)}/download`,
      query: { path },
      accept3xx4xx: [404],
      signal: options.signal,
    });
    return res.status !== 404;
  }

  /**
   * GET /inspect/{uuid}/archive?path= → the tar stream (already gzip-decoded). Connecting is
   * retried; a stream that breaks off later is the caller's to re-request. Reading it fails with
   * ContreeTruncatedError when the body ends early (no gzip trailer, connection closed mid-body),
   * with ContreeStreamStalledError when it sends nothing for `streamIdleMs`.
   */
  archive(uuid: string, path: string, options: CallOptions = {}): Promise<ReadableStream<Uint8Array>> {
    return this.transport.send(
      {
        method: "GET",
        path: `/inspect/${seg(uuid)}/archive`,
        query: { path },
        accept: "application/x-tar",
        stream: true,
        signal: options.signal,
      },
      async (res) => {
        if (!res.body) throw new ContreeProtocolError("archive response has no body");
        return res.body;
      },
    );
  }

  /** HEAD /inspect/{uuid}/archive?path=. */
  async archiveExists(uuid: string, path: string, options: CallOptions = {}): Promise<boolean> {
    const res = await this.transport.empty({
      method: "HEAD",
      path: `/inspect/${seg(uuid)}/archive`,
      query: { path },
      accept3xx4xx: [404],
      signal: options.signal,
    });
    return res.status !== 404;
  }

  /** GET /inspect/{uuid}/grep with repeatable pattern/path/glob. */
  grep(uuid: string, query: GrepQuery, options: CallOptions = {}): Promise<GrepResult> {
    const list = (v: string | string[] | undefined) => (v === undefined ? undefined : [v].flat());
    return this.json({
      method: "GET",
      path: `/inspect/${seg(uuid)}/grep`,
      query: {
        pattern: list(query.pattern),
        path: list(query.path),
        glob: list(query.glob),
        max_count: query.max_count,
        max_total: query.max_total,
        case: query.case,
        before: query.before,
        after: query.after,
      },
      signal: options.signal,
    });
  }

  // ---- helpers ----------------------------------------------------------------------------------

  /** Uploads unless the server already has these bytes: sha256 locally, GET /files/{sha}, POST on 404. */
  async ensureFile(data: Uint8Array | string, options: CallOptions = {}): Promise<FileRef> {
    const bytes = toBytes(data);
    const sha256 = await sha256Hex(bytes);
    try {
      return await this.getFile(sha256, options);
    } catch (err) {
      if (!(err instanceof ContreeNotFoundError)) throw err;
    }
    const uploaded = await this.uploadFile(bytes, options);
    if (uploaded.sha256 && uploaded.sha256 !== sha256) {
      throw new ContreeProtocolError(`uploaded file hash ${uploaded.sha256} differs from local ${sha256}`);
    }
    return uploaded;
  }

  /** An image ref → UUID: a UUID passes through, `tag:NAME` is resolved via GET /inspect/?tag=. */
  async resolveImage(ref: string, options: CallOptions = {}): Promise<string> {
    if (isUuid(ref)) return ref;
    if (ref.startsWith("tag:") && ref.length > 4) return this.resolveTag(ref.slice(4), options);
    throw new TypeError(`not an image reference (UUID or tag:NAME): ${ref}`);
  }

  /**
   * Waits until the operation is terminal and returns it. Follows the event stream (events go to
   * `onEvent`); when the stream is unavailable, polls GET /operations/{id} (0.5 s doubling to 5 s).
   */
  async waitForOperation(id: string, options: WaitOptions = {}): Promise<OperationResponse> {
    const { signal, onEvent, spid } = options;
    try {
      for await (const event of this.events(id, { follow: true, spid, signal })) onEvent?.(event);
    } catch (err) {
      if (err instanceof ContreeAbortedError) throw err;
      // No log (404/405…), or one that keeps failing (5xx, 410 past the budget, a broken frame):
      // the operation's status is still there to poll; events from here on are lost to onEvent.
      if (!(err instanceof ContreeEventsUnavailableError)) this.onStreamLost?.(id, err);
    }
    return this.pollUntilTerminal(id, signal);
  }

  /** GET /operations/{id} until its status is terminal. */
  async pollUntilTerminal(id: string, signal?: AbortSignal): Promise<OperationResponse> {
    let delay = this.pollInitialMs;
    for (;;) {
      const operation = await this.getOperation(id, { signal });
      if (isTerminalStatus(operation.status)) return operation;
      await sleep(delay, signal);
      delay = Math.min(delay * 2, this.pollMaxMs);
    }
  }

  /**
   * Spawns and waits for a run-to-completion command. A non-zero exit or a timeout is still a
   * SUCCESS operation (see exitCode/timedOut); FAILED/CANCELLED are returned, not thrown. If
   * `signal` aborts while waiting, the operation is cancelled server-side and ContreeAbortedError
   * is thrown.
   */
  async run(request: InstanceSpawnRequest, options: WaitOptions = {}): Promise<RunResult> {
    // Not cancellable mid-request: an aborted spawn the server did accept would leave a VM nobody
    // knows the id of. The abort is honoured as soon as the id is known.
    options.signal?.throwIfAborted?.();
    const spawned = await this.spawn(request);
    let operation: OperationResponse;
    try {
      if (options.signal?.aborted) throw new ContreeAbortedError("aborted", { cause: options.signal.reason });
      operation = await this.waitForOperation(spawned.uuid, options);
    } catch (err) {
      // Whatever went wrong while waiting, the VM must not run on unattended.
      await this.cancelQuietly(spawned.uuid);
      throw err;
    }
    return runResultOf(operation);
  }

  /**
   * Starts a kept-alive VM: the main process sleeps (`sleep 2147483647`, no shell) for
   * `request.timeout` seconds while subprocesses run in it. Resolves once the main process has
   * started; on failure or abort the operation is cancelled.
   */
  async startInstance(request: StartInstanceRequest, options: CallOptions = {}): Promise<LiveInstance> {
    const spawned = await this.spawn(
      { ...request, command: "sleep", args: ["2147483647"], shell: false },
      { signal: options.signal },
    );
    const instance = new LiveInstance(this, spawned.uuid);
    try {
      await instance.ready(options);
    } catch (err) {
      await this.cancelQuietly(spawned.uuid);
      throw err;
    }
    return instance;
  }

  /** Best-effort cancel (no signal: it must run after the caller's abort). */
  async cancelQuietly(id: string): Promise<void> {
    try {
      await this.cancelOperation(id);
    } catch (err) {
      if (!(err instanceof ContreeError)) throw err;
    }
  }
}

/** Folds a finished instance operation into exit code, output and result image. */
export function runResultOf(operation: OperationResponse): RunResult {
  const result = (operation.metadata as InstanceMetadata | null | undefined)?.result ?? null;
  const state = result?.state;
  return {
    operation,
    status: operation.status,
    exitCode: wireNumber(state?.exit_code),
    signal: wireNumber(state?.signal),
    timedOut: state?.timed_out === true,
    resultImage: operation.result_image_uuid ?? operation.result?.image ?? null,
    stdout: TEXT.decode(decodeStreamRepr(result?.stdout)),
    stderr: TEXT.decode(decodeStreamRepr(result?.stderr)),
    truncated: result?.stdout?.truncated === true || result?.stderr?.truncated === true,
  };
}

function parseJson(text: string, requestPath: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new ContreeProtocolError(`${requestPath}: response is not JSON`, { requestPath, cause: err });
  }
}

async function operationIdOf(res: Response, requestPath: string): Promise<string> {
  const text = await res.text();
  if (text) {
    try {
      const body = JSON.parse(text) as { uuid?: unknown };
      if (typeof body.uuid === "string") return body.uuid;
    } catch {
      // fall through to Location
    }
  }
  return operationIdFromLocation(res, requestPath);
}

/** `Location: /v1/operations/{uuid}` → uuid. */
function operationIdFromLocation(res: Response, requestPath: string): string {
  const location = res.headers.get("location");
  const match = location ? /\/operations\/([^/?#]+)\/?(?:[?#].*)?$/.exec(location) : null;
  if (match?.[1]) return decodeURIComponent(match[1]);
  throw new ContreeProtocolError(`${requestPath}: response has neither uuid nor Location`, {
    status: res.status,
    requestPath,
  });
}
