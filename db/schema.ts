// The platform's tables. camelCase keys over snake_case columns; times are integer milliseconds.
import { sql } from "drizzle-orm";
import {
  blob,
  index,
  integer,
  primaryKey,
  real,
  sqliteTable,
  text,
  uniqueIndex,
} from "drizzle-orm/sqlite-core";

const createdAt = () =>
  integer("created_at", { mode: "timestamp_ms" }).notNull().default(sql`(unixepoch('subsec') * 1000)`);

export const users = sqliteTable(
  "users",
  {
    id: text("id").primaryKey(),
    /** Stored lower-cased and trimmed; unique. */
    email: text("email").notNull(),
    name: text("name"),
    passwordHash: text("password_hash").notNull(),
    createdAt: createdAt(),
    /** "Sign out everywhere": access tokens issued before this moment are refused. */
    tokensValidAfter: integer("tokens_valid_after", { mode: "timestamp_ms" }),
  },
  (t) => [uniqueIndex("users_email_unique").on(t.email)],
);

export const apiKeys = sqliteTable(
  "api_keys",
  {
    id: text("id").primaryKey(),
    userId: text("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    name: text("name").notNull(),
    /** The public part shown in listings, e.g. "occ_3fK9aQ2x". */
    prefix: text("prefix").notNull(),
    /** SHA-256 of the whole secret; keys are 256-bit random, so a fast hash is enough. */
    secretHash: text("secret_hash").notNull(),
    scopes: text("scopes", { mode: "json" }).$type<string[]>().notNull(),
    createdAt: createdAt(),
    lastUsedAt: integer("last_used_at", { mode: "timestamp_ms" }),
    revokedAt: integer("revoked_at", { mode: "timestamp_ms" }),
  },
  (t) => [
    uniqueIndex("api_keys_secret_hash_unique").on(t.secretHash),
    index("api_keys_user_idx").on(t.userId),
  ],
);

export type UserRow = typeof users.$inferSelect;
export type ApiKeyRow = typeof apiKeys.$inferSelect;

export const ROLES = ["OWNER", "EDITOR", "VIEWER"] as const;
export type Role = (typeof ROLES)[number];

export const sessions = sqliteTable(
  "sessions",
  {
    id: text("id").primaryKey(),
    title: text("title").notNull(),
    ownerId: text("owner_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    provider: text("provider").notNull(),
    /** Set once the main branch exists (right after the session row). */
    mainBranchId: text("main_branch_id"),
    /** How the agent's tool calls are approved: ALLOW (unattended) or ASK (answerPermission). */
    agentPermissions: text("agent_permissions", { enum: ["ALLOW", "ASK"] })
      .notNull()
      .default("ALLOW"),
    rootSnapshotId: text("root_snapshot_id"),
    createdAt: createdAt(),
  },
  (t) => [index("sessions_owner_idx").on(t.ownerId)],
);

export const members = sqliteTable(
  "members",
  {
    sessionId: text("session_id")
      .notNull()
      .references(() => sessions.id, { onDelete: "cascade" }),
    userId: text("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    role: text("role", { enum: ROLES }).notNull(),
    createdAt: createdAt(),
  },
  (t) => [primaryKey({ columns: [t.sessionId, t.userId] }), index("members_user_idx").on(t.userId)],
);

export const SNAPSHOT_ORIGINS = ["IMPORT", "CHECKPOINT", "RUN", "WRITE"] as const;

/** Share links: listable and revocable; the link's token carries its id (claim `lid`). */
export const shareLinks = sqliteTable(
  "share_links",
  {
    id: text("id").primaryKey(),
    sessionId: text("session_id")
      .notNull()
      .references(() => sessions.id, { onDelete: "cascade" }),
    role: text("role", { enum: ROLES }).notNull(),
    createdById: text("created_by_id").notNull(),
    createdAt: createdAt(),
    expiresAt: integer("expires_at", { mode: "timestamp_ms" }).notNull(),
    revokedAt: integer("revoked_at", { mode: "timestamp_ms" }),
  },
  (t) => [index("share_links_session_idx").on(t.sessionId)],
);

export type ShareLinkRow = typeof shareLinks.$inferSelect;

export const snapshots = sqliteTable(
  "snapshots",
  {
    id: text("id").primaryKey(),
    sessionId: text("session_id")
      .notNull()
      .references(() => sessions.id, { onDelete: "cascade" }),
    parentId: text("parent_id"),
    /** The provider's own id for this snapshot (a local store id, a ConTree image UUID). */
    providerRef: text("provider_ref").notNull(),
    origin: text("origin", { enum: SNAPSHOT_ORIGINS }).notNull(),
    label: text("label"),
    runId: text("run_id"),
    createdById: text("created_by_id"),
    fileCount: integer("file_count").notNull(),
    sizeBytes: integer("size_bytes").notNull(),
    /**
     * Bytes of file content this snapshot added over its parent (new and changed files): what keeping
     * it costs, summed per session and per owner for storage quotas.
     */
    addedBytes: integer("added_bytes").notNull().default(0),
    createdAt: createdAt(),
  },
  (t) => [
    index("snapshots_session_idx").on(t.sessionId, t.createdAt),
    index("snapshots_parent_idx").on(t.parentId),
  ],
);

export const branches = sqliteTable(
  "branches",
  {
    id: text("id").primaryKey(),
    sessionId: text("session_id")
      .notNull()
      .references(() => sessions.id, { onDelete: "cascade" }),
    name: text("name").notNull(),
    headSnapshotId: text("head_snapshot_id").notNull(),
    createdAt: createdAt(),
  },
  (t) => [uniqueIndex("branches_session_name_unique").on(t.sessionId, t.name)],
);

export const RUN_KINDS = ["EXEC", "PROMPT"] as const;
export const RUN_STATUSES = ["QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "ABORTED", "INTERRUPTED"] as const;
export type RunStatus = (typeof RUN_STATUSES)[number];

export const runs = sqliteTable(
  "runs",
  {
    id: text("id").primaryKey(),
    sessionId: text("session_id")
      .notNull()
      .references(() => sessions.id, { onDelete: "cascade" }),
    branchId: text("branch_id").notNull(),
    userId: text("user_id"),
    kind: text("kind", { enum: RUN_KINDS }).notNull(),
    status: text("status", { enum: RUN_STATUSES }).notNull(),
    input: text("input").notNull(),
    timeoutMs: integer("timeout_ms"),
    exitCode: integer("exit_code"),
    /** What the run printed (stdout and stderr interleaved), capped; flushed while it runs. */
    output: text("output").notNull().default(""),
    outputTruncated: integer("output_truncated", { mode: "boolean" }).notNull().default(false),
    killedBy: text("killed_by"),
    error: text("error"),
    snapshotId: text("snapshot_id"),
    durationMs: integer("duration_ms"),
    cpuMs: integer("cpu_ms"),
    /** Agent runs: tokens as the provider reported them through the gateway, and opencode's cost. */
    modelRequests: integer("model_requests"),
    inputTokens: integer("input_tokens"),
    outputTokens: integer("output_tokens"),
    costUsd: real("cost_usd"),
    /** The instance that executes the run (cluster/): only its death makes the run INTERRUPTED. */
    instanceId: text("instance_id"),
    /**
     * When an abort was asked for from an instance that could not tell the executing one directly
     * (PROFILE=serverless, or the owner did not answer): the executing instance checks for it every second.
     */
    abortRequestedAt: integer("abort_requested_at", { mode: "timestamp_ms" }),
    createdAt: createdAt(),
    startedAt: integer("started_at", { mode: "timestamp_ms" }),
    finishedAt: integer("finished_at", { mode: "timestamp_ms" }),
  },
  (t) => [
    index("runs_branch_idx").on(t.branchId, t.createdAt),
    index("runs_session_idx").on(t.sessionId, t.createdAt),
    index("runs_status_idx").on(t.status),
  ],
);

/**
 * Everything a run streamed, in order: output chunks and agent events (text, tool calls with input and
 * output, step usage, permission asks and answers, errors). A finished run's runOutput replays these,
 * so "what did the agent try, and why" outlives the run.
 */
export const runEvents = sqliteTable(
  "run_events",
  {
    runId: text("run_id")
      .notNull()
      .references(() => runs.id, { onDelete: "cascade" }),
    /** The event's sequence number within its run (what live subscribers saw as `seq`). */
    seq: integer("seq").notNull(),
    /** The stream event's kind, e.g. "output" or "agent". */
    kind: text("kind").notNull(),
    payload: text("payload", { mode: "json" }).notNull(),
    createdAt: createdAt(),
  },
  (t) => [primaryKey({ columns: [t.runId, t.seq] })],
);

export type RunEventRow = typeof runEvents.$inferSelect;

export type SessionRow = typeof sessions.$inferSelect;
export type MemberRow = typeof members.$inferSelect;
export type SnapshotRow = typeof snapshots.$inferSelect;
export type BranchRow = typeof branches.$inferSelect;
export type RunRow = typeof runs.$inferSelect;

export const EXPLORATION_STATUSES = ["RUNNING", "SUCCEEDED", "FAILED"] as const;

export const explorations = sqliteTable(
  "explorations",
  {
    id: text("id").primaryKey(),
    sessionId: text("session_id")
      .notNull()
      .references(() => sessions.id, { onDelete: "cascade" }),
    userId: text("user_id").notNull(),
    fromSnapshotId: text("from_snapshot_id").notNull(),
    status: text("status", { enum: EXPLORATION_STATUSES }).notNull(),
    prompts: text("prompts", { mode: "json" }).$type<string[]>().notNull(),
    samples: integer("samples").notNull(),
    scoreCommand: text("score_command").notNull(),
    depth: integer("depth").notNull(),
    parallelism: integer("parallelism").notNull(),
    promote: integer("promote", { mode: "boolean" }).notNull(),
    bestBranchId: text("best_branch_id"),
    error: text("error"),
    createdAt: createdAt(),
    finishedAt: integer("finished_at", { mode: "timestamp_ms" }),
  },
  (t) => [index("explorations_session_idx").on(t.sessionId)],
);

/** One candidate of an exploration: a branch, its agent run, its score run and the score. */
export const explorationBranches = sqliteTable(
  "exploration_branches",
  {
    explorationId: text("exploration_id")
      .notNull()
      .references(() => explorations.id, { onDelete: "cascade" }),
    branchId: text("branch_id").notNull(),
    level: integer("level").notNull(),
    prompt: text("prompt").notNull(),
    runId: text("run_id"),
    scoreRunId: text("score_run_id"),
    passed: integer("passed", { mode: "boolean" }),
    score: real("score"),
    createdAt: createdAt(),
  },
  (t) => [primaryKey({ columns: [t.explorationId, t.branchId] })],
);

export type ExplorationRow = typeof explorations.$inferSelect;
export type ExplorationBranchRow = typeof explorationBranches.$inferSelect;

/** A user's own model endpoint for agent runs; the key is sealed (AES-256-GCM), never stored plain. */
export const userModelKeys = sqliteTable("user_model_keys", {
  userId: text("user_id")
    .primaryKey()
    .references(() => users.id, { onDelete: "cascade" }),
  baseURL: text("base_url").notNull(),
  model: text("model").notNull(),
  sealedKey: text("sealed_key").notNull(),
  keyHint: text("key_hint").notNull(),
  updatedAt: integer("updated_at", { mode: "timestamp_ms" }).notNull(),
});

export type UserModelKeyRow = typeof userModelKeys.$inferSelect;

/** The append-only update log of collaboration rooms (compacted into one row now and then). */
export const collabUpdates = sqliteTable(
  "collab_updates",
  {
    id: integer("id").primaryKey({ autoIncrement: true }),
    room: text("room").notNull(),
    update: blob("update", { mode: "buffer" }).notNull(),
    createdAt: createdAt(),
  },
  (t) => [index("collab_updates_room_idx").on(t.room, t.id)],
);
