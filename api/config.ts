// The one place that reads the environment. Everything else receives a typed Config.
// A bad value stops start-up with one line naming the variable (ConfigError).
import { tmpdir } from "node:os";
import { resolve } from "node:path";
import type { SandboxConfig } from "../sandbox/create.ts";
import { type OutboundRules, parseAllowList } from "../sandbox/outbound-policy.ts";
import type { ProfileName } from "./profile.ts";

export type Environment = "development" | "production" | "test";

export interface Config {
  env: Environment;
  /** `standard`, or `serverless` (PROFILE): no child processes, no state beyond a temp dir (api/profile.ts). */
  profile: ProfileName;
  host: string;
  port: number;
  /** Public base URL used in links (share links, GraphiQL hints). */
  publicUrl: string;
  dataDir: string;
  database: { url: string; authToken: string | undefined };
  auth: {
    /** HS256 secret; when unset outside production a key is generated under dataDir. */
    jwtSecret: string | undefined;
    /** Ed25519 private key (PKCS#8 PEM) for EdDSA tokens; takes precedence over the secret. */
    jwtPrivateKey: string | undefined;
    tokenTtlSeconds: number;
  };
  limits: {
    maxBodyBytes: number;
    maxDepth: number;
    maxCost: number;
    maxAliases: number;
    maxTokens: number;
    /** Login/register attempts per client address per minute. */
    authAttemptsPerMinute: number;
    /** Authenticated requests per user per minute (every credential of the user counted together). */
    requestsPerMinutePerUser: number;
    /** Requests per API key per minute. */
    requestsPerMinutePerApiKey: number;
  };
  sandbox: SandboxConfig;
  /** How long an empty collaboration room stays loaded before it is unloaded. */
  collabUnloadGraceMs: number;
  /** Largest file that can be opened in a branch file room. */
  collabMaxFileBytes: number;
  /** Longest time a live edit waits before it is written to the branch's workspace. */
  collabFileFlushMs: number;
  /** How large collaboration rooms may grow, and sockets per user (see collab/room-limits.ts). */
  collabLimits: {
    chatBytes: number;
    chatMessages: number;
    chatMessageBytes: number;
    fileRoomBytes: number;
    socketsPerUser: number;
  };
  /** Runs executing at once on this instance (runs on one branch always queue). */
  maxParallelRuns: number;
  /** A branch's live sandbox with no work for this long is dropped, its lease released (0: never). */
  branchIdleMs: number;
  /** Live branch sandboxes one instance keeps at most (the least recently used idle one goes first). */
  maxLiveSandboxes: number;
  /** Worker threads computing diff patches off the event loop. */
  diffWorkers: number;
  /** Storage quotas (bytes of snapshot content kept), creation caps and the host's free-disk floor. */
  quota: {
    sessionBytes: number;
    userBytes: number;
    userSessions: number;
    branchesPerSession: number;
    /** Below this much free space on DATA_DIR's or SANDBOX_DIR's disk, writes are refused. */
    minFreeDiskBytes: number;
    /** Runs one user may have queued or running at once, over all instances. */
    userConcurrentRuns: number;
    /** Seconds of runs one user may use per UTC day, over all instances. */
    userRunSecondsPerDay: number;
  };
  /**
   * What several instances share (the bus, rate limits, run quotas): nothing (one process, in memory),
   * a Redis server (REDIS_URL), or Upstash's REST API (UPSTASH_REDIS_REST_URL and _TOKEN).
   */
  shared:
    | { kind: "memory" }
    | { kind: "redis"; url: string }
    | { kind: "upstash"; url: string; token: string };
  /**
   * Instances serving one platform (cluster/): the URL others reach this one at (null: the bound host
   * and port), the key signing calls between them (null: derived from the JWT secret/key), and how
   * long a branch's lease outlives its owner's last heartbeat.
   */
  cluster: { instanceUrl: string | null; secret: string | undefined; leaseMs: number };
  /** Prefix of every Redis/Upstash key; bus topics keep at least `retentionEvents` for `retentionMs` idle. */
  sharedKeys: { prefix: string; busRetentionMs: number; busRetentionEvents: number };
  /** Key material for sealing per-user secrets (SECRETS_KEY); null: derived from the JWT secret. */
  secretsKey: string | undefined;
  /**
   * The model gateway's network address, for sandboxes that only dial out (contree): where it
   * listens, and the URL those sandboxes use (null: http://host:port).
   */
  gateway: { host: string; port: number; url: string | null };
  /** The model agent runs use, reached through the gateway; null when none is configured. */
  model: { baseURL: string; apiKey: string | undefined; name: string } | null;
  /**
   * Live agents (a kept-alive `opencode serve` per branch in use, local provider): stopped after
   * `idleMs` without a turn; at most `maxLive` per instance, least recently used evicted first.
   */
  agents: { idleMs: number; maxLive: number };
  /** What each run's stored record (run_events, replayed by runOutput) may hold at most. */
  runTrail: { maxEvents: number; maxBytes: number };
  /**
   * Where user-supplied URLs (model keys, repositories) may lead besides public addresses
   * (ALLOW_PRIVATE_URLS, OUTBOUND_ALLOW_HOSTS). The operator's own AGENT_MODEL_BASE_URL is trusted.
   */
  outbound: OutboundRules;
  /**
   * /metrics (Prometheus text): whether it is served at all, the bearer token it then requires, and a
   * listener of its own (serving only /metrics, e.g. on an internal address) instead of the API's.
   */
  metrics: {
    enabled: boolean;
    token: string | undefined;
    listener: { host: string; port: number } | null;
    /** The stored-bytes total (a sum over every snapshot) is read from the database at most this often. */
    storageRefreshMs: number;
  };
  shutdownGraceMs: number;
  logLevel: "debug" | "info" | "warn" | "error";
}

export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    message: string,
  ) {
    super(`${variable}: ${message}`);
    this.name = "ConfigError";
  }
}

type Env = Record<string, string | undefined>;

function str(env: Env, name: string, fallback: string): string {
  const v = env[name];
  return v === undefined || v === "" ? fallback : v;
}

function optional(env: Env, name: string): string | undefined {
  const v = env[name];
  return v === undefined || v === "" ? undefined : v;
}

function int(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = optional(env, name);
  if (raw === undefined) return fallback;
  if (!/^\d+$/.test(raw.trim())) throw new ConfigError(name, `expected a whole number, got "${raw}"`);
  const n = Number(raw);
  if (n < min || n > max) throw new ConfigError(name, `must be between ${min} and ${max}, got ${n}`);
  return n;
}

function oneOf<T extends string>(env: Env, name: string, allowed: readonly T[], fallback: T): T {
  const raw = optional(env, name);
  if (raw === undefined) return fallback;
  if (!(allowed as readonly string[]).includes(raw)) {
    throw new ConfigError(name, `expected one of ${allowed.join(", ")}, got "${raw}"`);
  }
  return raw as T;
}

/** ConTree (the microVM provider) is available when it has a token; the project is needed for IAM tokens. */
function contreeConfig(env: Env): SandboxConfig["contree"] {
  const token = optional(env, "CONTREE_API_KEY") ?? optional(env, "CONTREE_TOKEN");
  if (!token) {
    if (env.SANDBOX_PROVIDER === "contree")
      throw new ConfigError("SANDBOX_PROVIDER", "contree needs CONTREE_API_KEY (and CONTREE_PROJECT)");
    return null;
  }
  const url = str(env, "CONTREE_URL", "https://api.tokenfactory.nebius.com/sandboxes");
  const image = str(env, "CONTREE_IMAGE", "tag:ubuntu:latest");
  if (!/^https?:\/\//.test(url))
    throw new ConfigError("CONTREE_URL", `expected an http(s) URL, got "${url}"`);
  return {
    url: url.replace(/\/+$/, ""),
    token,
    project: optional(env, "CONTREE_PROJECT") ?? null,
    image,
    imageSource:
      optional(env, "CONTREE_IMAGE_SOURCE") ??
      // A docker-style tag ("ubuntu:latest", "library/node:22") is importable from Docker Hub.
      (/^tag:[a-z0-9][\w.\-/]*:[\w.-]+$/.test(image)
        ? `docker://docker.io/${image.includes("/") ? "" : "library/"}${image.slice(4)}`
        : null),
    network: bool(env, "CONTREE_NETWORK", true),
    streamIdleMs: int(env, "CONTREE_STREAM_IDLE_MS", 30_000, 100, 3_600_000),
  };
}

function bool(env: Env, name: string, fallback: boolean): boolean {
  const raw = optional(env, name);
  if (raw === undefined) return fallback;
  if (/^(1|true|yes|on)$/i.test(raw)) return true;
  if (/^(0|false|no|off)$/i.test(raw)) return false;
  throw new ConfigError(name, `expected true or false, got "${raw}"`);
}

const UNITS: Record<string, number> = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 };

/** Sizes such as 1048576, 512kb, 10mb, 2gb. */
function bytes(env: Env, name: string, fallback: number): number {
  const raw = optional(env, name);
  if (raw === undefined) return fallback;
  const m = /^(\d+)\s*(b|kb|mb|gb)?$/i.exec(raw.trim());
  if (!m) throw new ConfigError(name, `expected a size like 1048576, 512kb, 10mb or 2gb, got "${raw}"`);
  const n = Number(m[1]) * UNITS[(m[2] ?? "b").toLowerCase()]!;
  if (n < 1024) throw new ConfigError(name, "must be at least 1kb");
  return n;
}

function databaseUrl(env: Env, dataDir: string): string {
  const raw = optional(env, "DATABASE_URL");
  if (raw === undefined) return `file:${resolve(dataDir, "opencode-cloud.db")}`;
  if (!/^(file:|libsql:|https?:|wss?:)/.test(raw)) {
    throw new ConfigError(
      "DATABASE_URL",
      `expected a file:, libsql://, http(s):// or ws(s):// URL, got "${raw}"`,
    );
  }
  return raw;
}

/** REDIS_URL or Upstash's REST URL and token (one or the other), else in-process. */
function sharedConfig(env: Env): Config["shared"] {
  const redisUrl = optional(env, "REDIS_URL");
  const upstashUrl = optional(env, "UPSTASH_REDIS_REST_URL");
  const upstashToken = optional(env, "UPSTASH_REDIS_REST_TOKEN");
  if (redisUrl && upstashUrl)
    throw new ConfigError("REDIS_URL", "set REDIS_URL or UPSTASH_REDIS_REST_URL, not both");
  if (redisUrl) {
    if (!/^rediss?:\/\/[^/]/.test(redisUrl))
      throw new ConfigError("REDIS_URL", `expected a redis:// or rediss:// URL, got "${redact(redisUrl)}"`);
    return { kind: "redis", url: redisUrl };
  }
  if (upstashUrl) {
    if (!/^https?:\/\/[^/]/.test(upstashUrl))
      throw new ConfigError("UPSTASH_REDIS_REST_URL", `expected an https:// URL, got "${upstashUrl}"`);
    if (!upstashToken)
      throw new ConfigError("UPSTASH_REDIS_REST_TOKEN", "required with UPSTASH_REDIS_REST_URL");
    return { kind: "upstash", url: upstashUrl.replace(/\/+$/, ""), token: upstashToken };
  }
  if (upstashToken) throw new ConfigError("UPSTASH_REDIS_REST_URL", "required with UPSTASH_REDIS_REST_TOKEN");
  return { kind: "memory" };
}

const redact = (url: string) => url.replace(/\/\/[^@/]*@/, "//***@");

/**
 * The agents' model: any OpenAI-compatible endpoint (AGENT_MODEL_BASE_URL), or OpenAI or Anthropic
 * (whose OpenAI-compatible endpoint is used) from their usual key variables.
 */
function modelConfig(env: Env): Config["model"] {
  const baseURL = optional(env, "AGENT_MODEL_BASE_URL");
  const name = optional(env, "AGENT_MODEL");
  if (baseURL) {
    try {
      new URL(baseURL);
    } catch {
      throw new ConfigError("AGENT_MODEL_BASE_URL", `not a valid URL: "${baseURL}"`);
    }
    return { baseURL, apiKey: optional(env, "AGENT_MODEL_API_KEY"), name: name ?? "default" };
  }
  const openai = optional(env, "OPENAI_API_KEY");
  if (openai) return { baseURL: "https://api.openai.com/v1", apiKey: openai, name: name ?? "gpt-4.1" };
  const anthropic = optional(env, "ANTHROPIC_API_KEY");
  if (anthropic)
    return { baseURL: "https://api.anthropic.com/v1", apiKey: anthropic, name: name ?? "claude-sonnet-4-5" };
  return null;
}

/**
 * /metrics: open on the API's listener outside production; in production only behind METRICS_TOKEN or
 * on a listener of its own (METRICS_PORT), unless METRICS_ENABLED=true opts in explicitly.
 */
function metricsConfig(env: Env, nodeEnv: Environment): Config["metrics"] {
  const token = optional(env, "METRICS_TOKEN");
  if (token !== undefined && token.length < 16)
    throw new ConfigError("METRICS_TOKEN", "must be at least 16 characters");
  const host = optional(env, "METRICS_HOST");
  if (host !== undefined && optional(env, "METRICS_PORT") === undefined)
    throw new ConfigError("METRICS_PORT", "required with METRICS_HOST");
  const listener =
    optional(env, "METRICS_PORT") === undefined
      ? null
      : { host: host ?? "127.0.0.1", port: int(env, "METRICS_PORT", 0, 0, 65535) };
  const protectedOrDev = nodeEnv !== "production" || token !== undefined || listener !== null;
  return {
    enabled: bool(env, "METRICS_ENABLED", protectedOrDev),
    token,
    listener,
    storageRefreshMs: int(env, "METRICS_STORAGE_REFRESH_MS", 60_000, 1000, 24 * 3600_000),
  };
}

export function loadConfig(env: Env = process.env): Config {
  const nodeEnv = oneOf(env, "NODE_ENV", ["development", "production", "test"] as const, "development");
  const host = str(env, "HOST", "127.0.0.1");
  const port = int(env, "PORT", 4000, 0, 65535);
  const profile = oneOf(env, "PROFILE", ["standard", "serverless"] as const, "standard");
  const dataDir = resolve(
    str(env, "DATA_DIR", profile === "serverless" ? resolve(tmpdir(), "opencode-cloud") : ".data"),
  );
  const publicUrl = str(env, "PUBLIC_URL", `http://${host === "0.0.0.0" ? "localhost" : host}:${port}`);
  try {
    new URL(publicUrl);
  } catch {
    throw new ConfigError("PUBLIC_URL", `not a valid URL: "${publicUrl}"`);
  }

  const jwtSecret = optional(env, "JWT_SECRET");
  if (jwtSecret !== undefined && jwtSecret.length < 32) {
    throw new ConfigError("JWT_SECRET", "must be at least 32 characters");
  }
  const jwtPrivateKey = optional(env, "JWT_PRIVATE_KEY");
  if (jwtPrivateKey !== undefined && !jwtPrivateKey.includes("BEGIN PRIVATE KEY")) {
    throw new ConfigError("JWT_PRIVATE_KEY", "expected a PKCS#8 PEM (-----BEGIN PRIVATE KEY-----)");
  }
  if (nodeEnv === "production" && !jwtSecret && !jwtPrivateKey) {
    throw new ConfigError("JWT_SECRET", "required in production (or set JWT_PRIVATE_KEY)");
  }

  const url = databaseUrl(env, dataDir);
  const authToken = optional(env, "DATABASE_AUTH_TOKEN");
  // Refuses writes below it (quota), and stops commands that take the disk below it (sandbox).
  const minFreeDiskBytes = bytes(env, "DISK_MIN_FREE_BYTES", 2 * 1024 ** 3);

  return {
    env: nodeEnv,
    profile,
    host,
    port,
    publicUrl: publicUrl.replace(/\/$/, ""),
    dataDir,
    database: { url, authToken },
    auth: {
      jwtSecret,
      jwtPrivateKey,
      tokenTtlSeconds: int(env, "JWT_TTL_SECONDS", 7 * 24 * 3600, 60, 365 * 24 * 3600),
    },
    limits: {
      maxBodyBytes: bytes(env, "MAX_BODY_BYTES", 1024 * 1024),
      maxDepth: int(env, "GRAPHQL_MAX_DEPTH", 12, 2, 100),
      // graphql-armor weighs depth (x1.5 per level) but not list sizes; a dashboard listing sessions with
      // branches, heads and members scores ~6000, so the default leaves room for such queries.
      maxCost: int(env, "GRAPHQL_MAX_COST", 20_000, 10, 1_000_000),
      maxAliases: int(env, "GRAPHQL_MAX_ALIASES", 30, 1, 1000),
      maxTokens: int(env, "GRAPHQL_MAX_TOKENS", 2000, 50, 100_000),
      authAttemptsPerMinute: int(env, "AUTH_RATE_LIMIT_PER_MINUTE", 20, 1, 100_000),
      // Generous: they stop runaway scripts and floods, not normal use (a busy UI sends a few a second).
      requestsPerMinutePerUser: int(env, "REQUESTS_PER_MINUTE_PER_USER", 6000, 1, 100_000_000),
      requestsPerMinutePerApiKey: int(env, "REQUESTS_PER_MINUTE_PER_API_KEY", 6000, 1, 100_000_000),
    },
    sandbox: {
      provider: oneOf(env, "SANDBOX_PROVIDER", ["local", "contree"] as const, "local"),
      offerLocal: profile !== "serverless",
      contree: contreeConfig(env),
      dir: resolve(str(env, "SANDBOX_DIR", resolve(dataDir, "sandbox"))),
      // Shared by instances on one machine (snapshots any of them can materialise); null: SANDBOX_DIR/store.
      storeDir: optional(env, "SANDBOX_STORE_DIR") ? resolve(optional(env, "SANDBOX_STORE_DIR")!) : null,
      workspaces: oneOf(env, "SANDBOX_WORKSPACES", ["auto", "overlay", "copy"] as const, "auto"),
      // A shared (production) server must isolate commands; opting out is explicit.
      requireIsolation: bool(env, "SANDBOX_REQUIRE_ISOLATION", nodeEnv === "production"),
      // Cloning host paths is a developer convenience; a multi-tenant server must not allow it.
      allowLocalRepos: bool(env, "SANDBOX_ALLOW_LOCAL_REPOS", nodeEnv !== "production"),
      timeoutMs: int(env, "SANDBOX_TIMEOUT_MS", 10 * 60_000, 100, 24 * 3600_000),
      maxOutputBytes: bytes(env, "SANDBOX_MAX_OUTPUT_BYTES", 16 * 1024 * 1024),
      maxProcesses: int(env, "SANDBOX_MAX_PROCESSES", 512, 8, 1_000_000),
      maxMemoryBytes: bytes(env, "SANDBOX_MAX_MEMORY_BYTES", 4 * 1024 ** 3),
      maxWriteBytes: bytes(env, "SANDBOX_MAX_WRITE_BYTES", 1024 ** 3),
      // A snapshot's listing is kept whole every 16 snapshots and read into memory: bounded.
      maxSnapshotEntries: int(env, "SANDBOX_MAX_SNAPSHOT_ENTRIES", 500_000, 100, 50_000_000),
      minFreeDiskBytes,
    },
    maxParallelRuns: int(env, "RUNS_MAX_PARALLEL", 4, 1, 1000),
    branchIdleMs: int(env, "BRANCH_IDLE_MS", 10 * 60_000, 0, 7 * 24 * 3600_000),
    maxLiveSandboxes: int(env, "MAX_LIVE_SANDBOXES", 200, 1, 1_000_000),
    diffWorkers: int(env, "DIFF_WORKERS", 2, 1, 64),
    // Sized for a shared host with a 50 GB disk: a few active users fit, and the floor keeps the
    // database and logs writable whatever they do.
    quota: {
      sessionBytes: bytes(env, "QUOTA_SESSION_BYTES", 5 * 1024 ** 3),
      userBytes: bytes(env, "QUOTA_USER_BYTES", 10 * 1024 ** 3),
      userSessions: int(env, "QUOTA_USER_SESSIONS", 100, 1, 1_000_000),
      branchesPerSession: int(env, "QUOTA_SESSION_BRANCHES", 200, 1, 1_000_000),
      minFreeDiskBytes,
      userConcurrentRuns: int(env, "QUOTA_USER_CONCURRENT_RUNS", 10, 1, 100_000),
      userRunSecondsPerDay: int(env, "QUOTA_USER_RUN_SECONDS_PER_DAY", 24 * 3600, 1, 1_000_000_000),
    },
    shared: sharedConfig(env),
    cluster: {
      instanceUrl: (() => {
        const url = optional(env, "INSTANCE_URL");
        if (url !== undefined && !/^https?:\/\/[^/]+\/?$/.test(url))
          throw new ConfigError("INSTANCE_URL", `expected an http(s) base URL, got "${url}"`);
        return url?.replace(/\/+$/, "") ?? null;
      })(),
      secret: (() => {
        const secret = optional(env, "CLUSTER_SECRET");
        if (secret !== undefined && secret.length < 32)
          throw new ConfigError("CLUSTER_SECRET", "must be at least 32 characters");
        return secret;
      })(),
      leaseMs: int(env, "CLUSTER_LEASE_MS", 15_000, 1000, 600_000),
    },
    sharedKeys: {
      prefix: str(env, "REDIS_KEY_PREFIX", "occ:"),
      busRetentionMs: int(env, "BUS_RETENTION_MS", 10 * 60_000, 1000, 7 * 24 * 3600_000),
      busRetentionEvents: int(env, "BUS_RETENTION_EVENTS", 1000, 10, 10_000_000),
    },
    collabUnloadGraceMs: int(env, "COLLAB_UNLOAD_GRACE_MS", 2000, 0, 3_600_000),
    collabMaxFileBytes: int(env, "COLLAB_MAX_FILE_BYTES", 1024 * 1024, 1, 64 * 1024 * 1024),
    collabFileFlushMs: int(env, "COLLAB_FILE_FLUSH_MS", 300, 0, 60_000),
    collabLimits: (() => {
      const maxFile = int(env, "COLLAB_MAX_FILE_BYTES", 1024 * 1024, 1, 64 * 1024 * 1024);
      // A file room holds the file plus Yjs's record of its edits: room to spare over the file.
      const fileRoomBytes = bytes(env, "COLLAB_MAX_FILE_ROOM_BYTES", 4 * maxFile + 64 * 1024);
      if (fileRoomBytes < maxFile)
        throw new ConfigError(
          "COLLAB_MAX_FILE_ROOM_BYTES",
          `must be at least COLLAB_MAX_FILE_BYTES (${maxFile})`,
        );
      return {
        chatBytes: bytes(env, "COLLAB_MAX_CHAT_BYTES", 4 * 1024 * 1024),
        chatMessages: int(env, "COLLAB_MAX_CHAT_MESSAGES", 5000, 1, 10_000_000),
        chatMessageBytes: bytes(env, "COLLAB_MAX_CHAT_MESSAGE_BYTES", 64 * 1024),
        fileRoomBytes,
        socketsPerUser: int(env, "COLLAB_MAX_SOCKETS_PER_USER", 100, 1, 1_000_000),
      };
    })(),
    gateway: {
      host: str(env, "MODEL_GATEWAY_HOST", "127.0.0.1"),
      port: int(env, "MODEL_GATEWAY_PORT", 0, 0, 65535),
      url: (() => {
        const url = optional(env, "MODEL_GATEWAY_URL");
        if (url !== undefined && !/^https?:\/\/[^/]/.test(url))
          throw new ConfigError("MODEL_GATEWAY_URL", `expected an http(s) URL, got "${url}"`);
        return url?.replace(/\/+$/, "") ?? null;
      })(),
    },
    model: modelConfig(env),
    // ~0.65 GB per idle opencode serve: 12 take ~8 GB, which on a 24 GB host leaves room for
    // RUNS_MAX_PARALLEL commands at their memory cap.
    agents: {
      idleMs: int(env, "AGENT_IDLE_MS", 10 * 60_000, 1000, 7 * 24 * 3600_000),
      maxLive: int(env, "AGENT_MAX_LIVE", 12, 1, 10_000),
    },
    // A chatty run (a command printing for minutes, an agent streaming long outputs) stops being
    // stored here; 8 MB keeps a long agent turn whole.
    runTrail: {
      maxEvents: int(env, "RUN_EVENTS_MAX_EVENTS", 20_000, 10, 10_000_000),
      maxBytes: bytes(env, "RUN_EVENTS_MAX_BYTES", 8 * 1024 * 1024),
    },
    // Refused by default everywhere, development too: a dev server's loopback holds databases and
    // admin consoles as well, and anyone who reaches its GraphQL port could aim a clone at them.
    outbound: {
      allowPrivate: bool(env, "ALLOW_PRIVATE_URLS", false),
      allowHosts: (() => {
        try {
          return parseAllowList(optional(env, "OUTBOUND_ALLOW_HOSTS") ?? "");
        } catch (error) {
          throw new ConfigError("OUTBOUND_ALLOW_HOSTS", (error as Error).message);
        }
      })(),
    },
    secretsKey: (() => {
      const key = optional(env, "SECRETS_KEY");
      if (key !== undefined && key.length < 32)
        throw new ConfigError("SECRETS_KEY", "must be at least 32 characters");
      return key;
    })(),
    metrics: metricsConfig(env, nodeEnv),
    shutdownGraceMs: int(env, "SHUTDOWN_GRACE_MS", 10_000, 0, 600_000),
    logLevel: oneOf(env, "LOG_LEVEL", ["debug", "info", "warn", "error"] as const, "info"),
  };
}
