// The deployment profile. `standard`: one long-lived process that may do everything (local sandboxes
// with bubblewrap, live agents, the model gateway's listener, Yjs rooms). `serverless`
// (PROFILE=serverless): instances that a host starts on demand, runs several of at once and stops when
// idle (the new Deno Deploy, for one), so nothing may live only in one process or on its disk.
//
// A serverless instance starts no child process (no local provider: its probes and commands spawn
// bubblewrap, and no opencode binary: agent turns need the gateway below), opens no listener besides
// the HTTP one (the model gateway's unix socket and TCP port), keeps nothing on disk beyond a temp
// dir, and holds no connection it cannot drop (Upstash's REST API, not a Redis connection). Diff
// patches still run on worker threads (threads of this process, started on demand, not processes).
// What it does not serve it refuses at start-up (a ConfigError naming the variable) or per request
// (a typed error), and says in `health.warnings`.
import { tmpdir } from "node:os";
import { relative, resolve } from "node:path";
import { AppError } from "../resolvers/errors.ts";
import { type Config, ConfigError } from "./config.ts";
import { errorResponse } from "./errors.ts";
import type { AppFetch } from "./runtime/types.ts";

export type ProfileName = "standard" | "serverless";

/** Whether `path` is inside the OS temp dir (what a serverless host gives an instance to write). */
const inTempDir = (path: string): boolean => {
  const rel = relative(resolve(tmpdir()), resolve(path));
  return rel !== "" && !rel.startsWith("..") && !rel.startsWith("/");
};

const fileOf = (url: string): string | null => (url.startsWith("file:") ? url.slice("file:".length) : null);

const LONG_LIVED = "a long-lived instance (PROFILE=standard) on the same database, Upstash and JWT secret";

/** Start-up checks of the serverless profile: the first setting it cannot run with, named. */
export function checkProfile(config: Config): void {
  if (config.profile !== "serverless") return;
  if (config.sandbox.provider !== "contree" || !config.sandbox.contree)
    throw new ConfigError(
      "SANDBOX_PROVIDER",
      "PROFILE=serverless runs sandboxes on ConTree only: set SANDBOX_PROVIDER=contree and CONTREE_API_KEY (the local provider runs bubblewrap as child processes and keeps workspaces on this disk)",
    );
  if (config.shared.kind === "redis")
    throw new ConfigError(
      "REDIS_URL",
      "PROFILE=serverless reaches Redis through Upstash's REST API (UPSTASH_REDIS_REST_URL and _TOKEN): REDIS_URL holds connections open (pub/sub, blocking reads) that a stopped instance drops",
    );
  if (config.shared.kind !== "upstash")
    throw new ConfigError(
      "UPSTASH_REDIS_REST_URL",
      "PROFILE=serverless needs Upstash (UPSTASH_REDIS_REST_URL and _TOKEN): instances come and go, so the bus, rate limits and run quotas cannot live in one's memory",
    );
  if (!config.auth.jwtSecret && !config.auth.jwtPrivateKey)
    throw new ConfigError(
      "JWT_SECRET",
      "PROFILE=serverless needs JWT_SECRET (or JWT_PRIVATE_KEY): a secret generated on one instance's disk signs tokens no other instance accepts",
    );
  if (!inTempDir(config.dataDir))
    throw new ConfigError(
      "DATA_DIR",
      `PROFILE=serverless keeps nothing on disk beyond the temp dir (${tmpdir()}); got "${config.dataDir}"`,
    );
  if (config.metrics.enabled && config.metrics.listener)
    throw new ConfigError(
      "METRICS_PORT",
      "PROFILE=serverless opens no listener besides the HTTP one: serve /metrics there behind METRICS_TOKEN instead",
    );
  const file = fileOf(config.database.url);
  if (file !== null && (config.env === "production" || !inTempDir(file)))
    throw new ConfigError(
      "DATABASE_URL",
      "PROFILE=serverless needs a libSQL/Turso server (libsql://… or https://… with DATABASE_AUTH_TOKEN); a file: database is allowed outside production only, in the temp dir (it lasts as long as the instance)",
    );
}

/** What the profile changes while the server runs. */
export interface ProfilePlan {
  name: ProfileName;
  /** Why the model gateway is not started here (null: it is, when the opencode binary is installed). */
  noGateway: string | null;
  /** Lines for health.warnings: what this instance does not serve, and where that is served. */
  notes: string[];
  /** The app's fetch, refusing with a typed error what this profile does not serve. */
  guard(fetch: AppFetch): AppFetch;
}

export function profilePlan(config: Config): ProfilePlan {
  if (config.profile !== "serverless")
    return { name: "standard", noGateway: null, notes: [], guard: (fetch) => fetch };
  const collab = `collaboration rooms (/collab) are not served by PROFILE=serverless: a Yjs room lives in one process's memory; serve /collab from ${LONG_LIVED}`;
  const notes = [collab];
  const file = fileOf(config.database.url);
  if (file !== null)
    notes.push(
      `PROFILE=serverless with a file: database (${file}, in the temp dir): it is lost with this instance; use a libSQL/Turso server`,
    );
  return {
    name: "serverless",
    noGateway: `PROFILE=serverless opens no listener besides HTTP, and agent turns need the model gateway's (ConTree VMs dial it); run them on ${LONG_LIVED}`,
    notes,
    guard: (fetch) => async (request, connection) => {
      const { pathname } = new URL(request.url);
      if (pathname.startsWith("/collab/")) return errorResponse(new AppError("NOT_SUPPORTED", collab));
      return fetch(request, connection);
    },
  };
}
