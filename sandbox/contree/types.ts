// Wire types of the ConTree API (/v1), as the generated official clients describe them
// (see /work/shared/design/contree-api.md §2). Field names are the wire names. Optional fields stay
// optional, nullable ones say so, and every object tolerates extra fields the server may add later.

/** ISO-8601 UTC timestamp as sent by the server. */
export type Timestamp = string;

/** A time filter: ISO string, relative ("15m", "2h", "3d", "1w"), epoch seconds or a Date. */
export type TimeParam = string | number | Date;

// ---------------------------------------------------------------------------------------------
// Images, tags, files

export interface Image {
  uuid: string;
  tag: string | null;
  created_at: Timestamp;
  /** The operation that produced the image (null for seed/imported roots in some deployments). */
  operation_uuid?: string | null;
  [extra: string]: unknown;
}

export interface ImageList {
  images: Image[];
  [extra: string]: unknown;
}

export interface RegistryCredentials {
  username?: string;
  password?: string;
}

export interface ImageImportRequest {
  /** e.g. `{ url: "docker://docker.io/library/busybox:latest" }` */
  registry: { url: string; credentials?: RegistryCredentials | null };
  tag?: string | null;
  /** Seconds. */
  timeout?: number | null;
}

/** What `POST /files` returns; a `File` is a superset. */
export interface FileRef {
  uuid: string;
  sha256: string;
  size: number;
  [extra: string]: unknown;
}

export interface File extends FileRef {
  created_at: Timestamp;
  updated_at: Timestamp;
}

export interface FileList {
  files: File[];
  [extra: string]: unknown;
}

// ---------------------------------------------------------------------------------------------
// Spawning

export type StreamEncoding = "ascii" | "base64";

/** Captured output: printable ASCII comes back as `ascii`, anything else as `base64`. */
export interface StreamRepr {
  value: string;
  encoding?: StreamEncoding;
  truncated?: boolean;
  [extra: string]: unknown;
}

/** Stdin chunk; `close: false` keeps stdin open for later writes. */
export interface ClosableStreamRepr {
  value: string;
  encoding?: StreamEncoding;
  close?: boolean;
}

/** A file placed into the VM at spawn time. `mode` is an octal string on the wire ("0644"). */
export interface FileSpec {
  uuid: string;
  uid?: number;
  gid?: number;
  mode?: string | number;
}

export interface InstanceSpawnRequest {
  /** Executable, or a shell expression when `shell` is true. */
  command: string;
  /** Image UUID or `tag:NAME`. */
  image: string;
  args?: string[] | null;
  shell?: boolean | null;
  env?: Record<string, string> | null;
  preserve_env?: boolean | null;
  /** Absolute path. */
  cwd?: string | null;
  uid?: number | null;
  gid?: number | null;
  hostname?: string | null;
  /** true: throw away filesystem changes, no result image. Server default false. */
  disposable?: boolean | null;
  /** Seconds; server default 60, capped by `limits.instance_max_timeout`. */
  timeout?: number | null;
  truncate_output_at?: number | null;
  stdin?: ClosableStreamRepr | null;
  /** Absolute destination path → file. */
  files?: Record<string, FileSpec> | null;
  resources_limits?: { max_layer_bytes?: number | null } | null;
  networking?: { enabled?: boolean | null } | null;
}

/** `uuid` is the operation id; the rest echoes the request. */
export interface InstanceSpawnResponse extends Partial<InstanceSpawnRequest> {
  uuid: string;
  result?: OperationResult | null;
  [extra: string]: unknown;
}

// ---------------------------------------------------------------------------------------------
// Operations

export type OperationStatus = "PENDING" | "ASSIGNED" | "EXECUTING" | "SUCCESS" | "FAILED" | "CANCELLED";
export type OperationKind = "instance" | "image_import";

export const TERMINAL_STATUSES: ReadonlySet<string> = new Set(["SUCCESS", "FAILED", "CANCELLED"]);

/** True for SUCCESS, FAILED and CANCELLED. Unknown statuses count as non-terminal (api-playground). */
export function isTerminalStatus(status: string): boolean {
  return TERMINAL_STATUSES.has(status.toUpperCase());
}

export interface OperationSummary {
  uuid: string;
  /** `instance` | `image_import`; kept open for values added later. */
  kind: OperationKind | (string & {});
  status: OperationStatus | (string & {});
  error?: string | null;
  created_at: Timestamp;
  /** Seconds. */
  duration?: number | null;
  image_size?: number | null;
  consumed_cpu?: number | null;
  consumed_memory?: number | null;
  /** The input image. */
  image_uuid?: string | null;
  result_image_uuid?: string | null;
  [extra: string]: unknown;
}

export interface OperationResult {
  image?: string | null;
  tag?: string | null;
  [extra: string]: unknown;
}

export interface ProcessState {
  /** −1 while running or when killed by a signal. */
  exit_code: number;
  pid?: number;
  /** −1 = none. */
  signal?: number;
  timed_out?: boolean;
  core_dump?: boolean;
  stopped?: boolean;
  continued?: boolean;
  [extra: string]: unknown;
}

export interface InstanceResources {
  block_input?: number;
  block_output?: number;
  cost?: number;
  elapsed_time?: number;
  involuntary_switches?: number;
  max_rss?: number;
  monotonic_time?: number;
  page_faults?: number;
  page_faults_io?: number;
  shared_memory?: number;
  signals?: number;
  swaps?: number;
  system_cpu_time?: number;
  unshared_memory?: number;
  user_cpu_time?: number;
  voluntary_switches?: number;
  [extra: string]: unknown;
}

/** Folded state of one process: the main one (in operation metadata) or a subprocess. */
export interface InstanceResult {
  resources?: InstanceResources;
  state: ProcessState;
  stdout?: StreamRepr | null;
  stderr?: StreamRepr | null;
  [extra: string]: unknown;
}

export interface InstanceMetadata extends Partial<InstanceSpawnRequest> {
  result?: InstanceResult | null;
  [extra: string]: unknown;
}

export interface ImportMetadata {
  registry?: { url: string; credentials?: RegistryCredentials | null };
  tag?: string | null;
  timeout?: number | null;
  [extra: string]: unknown;
}

export interface OperationResponse extends OperationSummary {
  /** Spawn echo + `result` for instances, import request for imports. */
  metadata?: InstanceMetadata | ImportMetadata | null;
  result?: OperationResult | null;
}

// ---------------------------------------------------------------------------------------------
// Subprocesses

export interface ExecSpec {
  command: string;
  args?: string[] | null;
  shell?: boolean | null;
  env?: Record<string, string> | null;
  cwd?: string | null;
  uid?: number | null;
  gid?: number | null;
  stdin?: ClosableStreamRepr | null;
  truncate_output_at?: number | null;
}

export interface SubprocessCreated {
  spid: number;
  [extra: string]: unknown;
}

// ---------------------------------------------------------------------------------------------
// Events (SSE log of an operation)

export interface InitEventData {
  started_at?: string;
  runtime_path?: string;
  verbose?: boolean;
  init_pid?: number;
  hostname?: string;
  kernel?: string;
  machine?: string;
  boot_id?: string;
  [extra: string]: unknown;
}

export interface SpawnEventData {
  pid?: number;
  command?: string;
  args?: string[];
  shell?: boolean;
  cwd?: string;
  uid?: number;
  gid?: number;
  timeout?: number;
  truncate_at?: number;
  /** Secret-looking keys are redacted by the server. */
  env?: Record<string, string>;
  [extra: string]: unknown;
}

/** A stdin/stdout/stderr chunk. */
export interface StreamEventData {
  value: string;
  encoding?: StreamEncoding;
  truncated?: boolean;
  [extra: string]: unknown;
}

export interface ExitEventData {
  pid?: number;
  /** −1 when killed by a signal or timed out. */
  code: number;
  /** −1 = none. */
  signal: number;
  core_dump?: boolean;
  timed_out?: boolean;
  duration_ms?: number;
  resources?: Record<string, number>;
  [extra: string]: unknown;
}

export interface TruncatedEventData {
  stream?: string;
  bytes_emitted?: number;
  bytes_dropped?: number;
  [extra: string]: unknown;
}

export interface SizeCapEventData {
  limit_bytes?: number;
  file_size?: number;
  [extra: string]: unknown;
}

export interface NetworkEventData {
  interfaces?: Record<string, unknown>[];
  configured?: {
    ip4?: string;
    ip4_gw?: string;
    ip6?: string;
    ip6_gw?: string;
    gw_mac?: string;
    nameserver?: string;
  } | null;
  error?: string | null;
  [extra: string]: unknown;
}

export interface ShutdownEventData {
  stopped_at?: string;
  reason?: string;
  [extra: string]: unknown;
}

export interface CompletionEventData {
  status: OperationStatus | (string & {});
  result_image_uuid?: string | null;
  /** Older stub spelling of `result_image_uuid`. */
  result_image?: string | null;
  error?: string | null;
  duration_ms?: number;
  image_size_bytes?: number | null;
  [extra: string]: unknown;
}

export interface EventDataMap {
  init: InitEventData;
  spawn: SpawnEventData;
  stdin: StreamEventData;
  stdout: StreamEventData;
  stderr: StreamEventData;
  exit: ExitEventData;
  truncated: TruncatedEventData;
  size_cap: SizeCapEventData;
  network: NetworkEventData;
  shutdown: ShutdownEventData;
  completion: CompletionEventData;
}

export type KnownEventType = keyof EventDataMap;

interface EventBase {
  /** 0, 1, 2… per operation; the resume cursor. */
  id: number;
  /** RFC 3339. */
  ts?: string;
  /** 0 = in-VM daemon, 1 = main process, ≥ 2 = subprocesses. */
  spid?: number;
  [extra: string]: unknown;
}

export type KnownOperationEvent = {
  [K in KnownEventType]: EventBase & { type: K; data: EventDataMap[K] };
}[KnownEventType];

/** Event types this client does not know are passed through untouched. */
export interface UnknownOperationEvent extends EventBase {
  type: string;
  data: unknown;
}

export type OperationEvent = KnownOperationEvent | UnknownOperationEvent;

export type EventOf<K extends KnownEventType> = Extract<KnownOperationEvent, { type: K }>;

/** Narrows an event to a known type (a plain `event.type === "exit"` check cannot, see UnknownOperationEvent). */
export function isEventType<K extends KnownEventType>(event: OperationEvent, type: K): event is EventOf<K> {
  return event.type === type;
}

// ---------------------------------------------------------------------------------------------
// Inspect

export interface FileItem {
  size: number;
  /** Name relative to the listed directory. */
  path: string;
  owner: string | number;
  group: string | number;
  uid: number;
  gid: number;
  /** st_mode, e.g. 33188 = regular 0644. */
  mode: number;
  /** Unix seconds. */
  mtime: number;
  nlink: number;
  is_dir: boolean;
  is_regular: boolean;
  is_symlink: boolean;
  is_socket: boolean;
  is_fifo: boolean;
  symlink_to: string;
  [extra: string]: unknown;
}

export interface DirectoryList {
  path: string;
  files: FileItem[];
  [extra: string]: unknown;
}

export interface GrepSubmatch {
  text: string;
  start: number;
  end: number;
  [extra: string]: unknown;
}

export interface GrepMatch {
  path: string;
  line_number: number;
  absolute_offset?: number;
  line_text: string;
  line_bytes?: string;
  submatches?: GrepSubmatch[];
  type: "match" | "context" | (string & {});
  [extra: string]: unknown;
}

export interface GrepResult {
  path?: string | string[];
  patterns: string[];
  matches: GrepMatch[];
  truncated: boolean;
  [extra: string]: unknown;
}

// ---------------------------------------------------------------------------------------------
// whoami

export interface WhoAmI {
  token_uuid: string;
  /** Unix seconds. */
  token_expiration: number | null;
  permissions: Record<string, boolean>;
  limits?: Record<string, number>;
  operations_stat?: Record<string, number>;
  [extra: string]: unknown;
}

// ---------------------------------------------------------------------------------------------
// Query parameters

export interface ImageListQuery {
  /** 1..1000. */
  limit?: number;
  offset?: number;
  /** Only tagged images (`tagged=1`). */
  tagged?: boolean;
  /** Tag prefix filter. */
  tag?: string;
  uuid?: string;
  since?: TimeParam;
  until?: TimeParam;
}

export interface FileListQuery {
  limit?: number;
  offset?: number;
  since?: TimeParam;
  until?: TimeParam;
}

export interface OperationListQuery {
  limit?: number;
  offset?: number;
  status?: OperationStatus;
  kind?: OperationKind;
  since?: TimeParam;
  until?: TimeParam;
}

export interface EventsQuery {
  /** Keep the stream open until the operation completes (`follow=1`). */
  follow?: boolean;
  /** Only this process's events (also drops the operation-wide `completion`). */
  spid?: number;
  /** Start strictly after this event id. */
  since?: number;
}

export interface GrepQuery {
  /** Rust regexes, OR-ed; at least one. */
  pattern: string | string[];
  /** Paths to search (each must exist). */
  path?: string | string[];
  /** Globs; `!x` excludes. */
  glob?: string | string[];
  max_count?: number;
  max_total?: number;
  case?: string;
  before?: number;
  after?: number;
}
