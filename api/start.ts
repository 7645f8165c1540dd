// Composition root: builds every service once from config and starts serving. Used by api/main.ts
// (the process entry) and by tests (the same server, on an ephemeral port).
import { createRequire } from "node:module";
import { join } from "node:path";
import { ModelGateway } from "../agent/gateway.ts";
import { AgentPool } from "../agent/live/pool.ts";
import { opencodeBinary } from "../agent/opencode-binary.ts";
import { createCluster } from "../cluster/index.ts";
import { createPresenceRegistry } from "../collab/presence.ts";
import { CollabServer } from "../collab/server.ts";
import { openDatabase, tuneEmbedded } from "../db/client.ts";
import { applyMigrations } from "../db/migrate.ts";
import { BranchRuntime } from "../resolvers/branch-runtime.ts";
import type { Services } from "../resolvers/context.ts";
import { diskSpace } from "../resolvers/disk-space.ts";
import { beforeIdleDrop } from "../resolvers/idle-drop.ts";
import { Quotas } from "../resolvers/quota.ts";
import { RunQuotas } from "../resolvers/run-quota.ts";
import { ownerOperations, Runner } from "../resolvers/runner.ts";
import { headRef } from "../resolvers/snapshot-records.ts";
import { createProviders } from "../sandbox/create.ts";
import { createDiffPool } from "../sandbox/diff-pool.ts";
import { makePrivateDir } from "../sandbox/local/modes.ts";
import { OutboundPolicy } from "../sandbox/outbound-policy.ts";
import { schema } from "../schema/index.ts";
import { createAuthenticator } from "./auth/authenticate.ts";
import { createSecretBox } from "./auth/secret-box.ts";
import { createTokenService, type TokenService } from "./auth/tokens.ts";
import type { Config } from "./config.ts";
import { createLogger } from "./log.ts";
import { createMetrics } from "./metrics/index.ts";
import { checkProfile, profilePlan } from "./profile.ts";
import type { Runtime } from "./runtime/types.ts";
import { createApp } from "./server.ts";
import { createSharedState } from "./shared-state.ts";

const { version } = createRequire(import.meta.url)("../package.json") as { version: string };

export interface StartedServer {
  url: string;
  port: number;
  tokens: TokenService;
  /** Collaboration rooms loaded in memory (operators and leak tests). */
  collabRooms(): number;
  /** The separate /metrics listener (METRICS_PORT), when one is configured (optional: process handles have none). */
  metricsUrl?: string | null;
  /** This instance's live agents (tests and benchmarks look at their servers); null when none can run. */
  agents: AgentPool | null;
  /** Graceful stop: refuse new work, finish or abandon in-flight work, close sockets and the database. */
  stop(): Promise<void>;
}

export interface StartOptions {
  /** Where log lines go (stderr by default); tests read them. */
  logSink?: (line: string) => void;
  /** Sees every SQL statement (tests count them to catch N+1 queries). */
  onQuery?: (sql: string) => void;
}

export async function startServer(
  config: Config,
  runtime: Runtime,
  options: StartOptions = {},
): Promise<StartedServer> {
  checkProfile(config);
  // PROFILE=serverless: no local provider, no gateway listener, no /collab (api/profile.ts).
  const profile = profilePlan(config);
  const log = createLogger(config.logLevel, options.logSink);
  // Database, secrets and (by default) every sandbox's files: private to this user, old ones included.
  await makePrivateDir(config.dataDir);
  const database = openDatabase({ ...config.database, onQuery: options.onQuery });
  await tuneEmbedded(database.client, config.database.url);
  await applyMigrations(database.db);

  // Diff patches are computed on worker threads, never on the event loop (workers start on demand).
  const diffPool = createDiffPool({ workers: config.diffWorkers });
  // Where user-supplied URLs may lead: repository clones, users' model endpoints (setModelKey, gateway).
  const outbound = new OutboundPolicy(config.outbound);
  const sandboxes = await createProviders(
    config.sandbox,
    (level, message, provider) => log[level](message, { provider }),
    (job) => diffPool.run(job),
    outbound,
  );
  const tokens = await createTokenService(config);
  // The bus, rate limits and run quotas: in process, or shared through Redis/Upstash (several instances).
  const shared = createSharedState(config, log);
  // Prometheus metrics of this instance (null: /metrics is off): the bus every part uses is observed.
  const metrics = createMetrics({ config, db: database.db, runtime: runtime.name, version });
  const bus = metrics?.observeBus(shared.bus) ?? shared.bus;
  // Which instance owns each branch's live sandbox (everything here without Redis/Upstash).
  const cluster = createCluster(
    // Serverless instances cannot call each other: no leases, each serves every (ConTree) branch itself.
    {
      prefix: config.sharedKeys.prefix,
      ...config.cluster,
      leases: config.profile !== "serverless",
    },
    { bus, commands: shared.commands, log, secretMaterial: await tokens.secretMaterial() },
  );
  const branchRuntime = new BranchRuntime(sandboxes, config.maxParallelRuns, {
    ownership: cluster.ownership,
    headOf: (branchId) => headRef(database.db, branchId),
    log,
    idleMs: config.branchIdleMs,
    maxLive: config.maxLiveSandboxes,
  });
  // Agent runs need the opencode binary and a model, reached only through the gateway: over its unix
  // socket from local sandboxes (which also need bubblewrap), over the network from contree VMs.
  let gateway: ModelGateway | null = null;
  let gatewayURL: string | null = null;
  if (opencodeBinary() && !profile.noGateway) {
    gateway = new ModelGateway(
      join(config.dataDir, "gateway.sock"),
      (message, fields) => log.warn(message, fields),
      { outbound },
    );
    await gateway.start();
    if (sandboxes.all().some((p) => p.status.binds === "files")) {
      const port = await gateway.listenTcp(config.gateway.host, config.gateway.port);
      gatewayURL = config.gateway.url ?? `http://${config.gateway.host}:${port}`;
    }
  }
  // Live agents: one kept-alive opencode server per branch in use, on providers that run services.
  let agents: AgentPool | null = null;
  if (gateway && sandboxes.all().some((p) => p.startService)) {
    const socketRoot = join(config.dataDir, "agents");
    await makePrivateDir(socketRoot);
    agents = new AgentPool({
      gateway,
      socketRoot,
      idleMs: config.agents.idleMs,
      maxLive: config.agents.maxLive,
      log,
      fetchUnix: runtime.fetchUnix,
    });
  }
  // Every missing piece is named at once, so one look tells an operator all there is to fix.
  const agentUnavailable = (provider: string): string | null => {
    if (!sandboxes.has(provider)) return `The sandbox provider "${provider}" is not configured here`;
    const missing: string[] = [];
    if (!gateway)
      missing.push(
        profile.noGateway ?? "the opencode binary is not installed (npm package opencode-linux-x64)",
      );
    const { binds, isolation } = sandboxes.get(provider).status;
    if (binds === "host" && isolation !== "bubblewrap")
      missing.push("agent runs need bubblewrap isolation on this server (install bubblewrap)");
    return missing.length > 0 ? `Agent runs are unavailable: ${missing.join("; ")}` : null;
  };
  for (const name of sandboxes.names) {
    const reason = agentUnavailable(name);
    if (reason) log.warn("agent runs are unavailable", { provider: name, reason });
  }
  if (gatewayURL && /^http:\/\/(127\.|localhost)/.test(gatewayURL) && sandboxes.has("contree"))
    sandboxes
      .get("contree")
      .status.warnings.push(
        `contree: the model gateway is at ${gatewayURL}, which remote ConTree VMs cannot reach; set MODEL_GATEWAY_URL (and MODEL_GATEWAY_HOST/PORT)`,
      );
  const model = config.model
    ? // The operator's own endpoint: exempt from the outbound policy (it is config, not user input).
      { baseURL: config.model.baseURL, apiKey: config.model.apiKey, model: config.model.name, trusted: true }
    : null;
  const presence = createPresenceRegistry(bus, { shared: shared.kind !== "memory" });
  // The chat sink calls the collaboration server, which is built below (it needs the services).
  const chat: Services["chat"] = { append: (sessionId, message) => collab.appendChat(sessionId, message) };
  const quota = new Quotas(
    { ...config.quota, commandWriteBytes: config.sandbox.maxWriteBytes },
    database.db,
    diskSpace([config.dataDir, config.sandbox.dir]),
  );
  const runQuota = new RunQuotas(
    shared.runCounters,
    { ...config.quota, maxRunTimeoutMs: config.sandbox.timeoutMs },
    log,
  );
  const runner = new Runner({
    quota,
    db: database.db,
    bus,
    runtime: branchRuntime,
    log,
    gateway,
    gatewayURL,
    model,
    chat,
    agents,
    permissions: agents,
    trail: config.runTrail,
    turnTimeoutMs: config.sandbox.timeoutMs,
    cluster: cluster.ownership,
  });
  cluster.ownership.onSweep(async () => void (await runner.interruptRunsOfGoneInstances()));
  cluster.ownership.onAcquired(
    (branchId) => void runner.interruptRunsOfGoneInstances(branchId).catch(() => {}),
  );
  const interrupted = await runner.recoverInterrupted();
  if (interrupted > 0) log.warn("runs interrupted by the previous stop", { runs: interrupted });
  const auth = createAuthenticator({
    db: database.db,
    tokens,
    bus,
    onError: (message, error) => log.warn(message, { error: String(error) }),
  });
  const services: Services = {
    apiKeyLastUsed: (keyId) => auth.lastUsedOf(keyId),
    db: database.db,
    bus,
    passwords: runtime.password,
    tokens,
    rateLimiter: shared.rateLimiter,
    log,
    limits: {
      authAttemptsPerMinute: config.limits.authAttemptsPerMinute,
      maxRunTimeoutMs: config.sandbox.timeoutMs,
      requestsPerMinutePerUser: config.limits.requestsPerMinutePerUser,
      requestsPerMinutePerApiKey: config.limits.requestsPerMinutePerApiKey,
    },
    sandboxes,
    branchRuntime,
    runner,
    agents,
    quota,
    runQuota,
    shareLinks: { sign: tokens.signFor, verify: tokens.verifyFor },
    agentUnavailable,
    platformModel: model,
    outbound,
    chat,
    presence,
    secrets: createSecretBox(config.secretsKey ?? (await tokens.secretMaterial())),
    publicUrl: config.publicUrl,
    health: {
      version,
      runtime: runtime.name,
      provider: sandboxes.defaultName,
      isolation: sandboxes.default.status.isolation,
      workspaces: sandboxes.default.status.workspaces,
      warnings: [...sandboxes.all().flatMap((p) => p.status.warnings), ...profile.notes],
      profile: profile.name,
      providers: sandboxes.all().map((p) => p.status),
      checkDatabase: async () => (await database.client.execute("select 1")).rows.length === 1,
      sharedStore: shared.kind,
      checkSharedStore: () => shared.ping(),
    },
  };
  const collab = new CollabServer({
    db: database.db,
    bus,
    presence,
    log,
    shareLinks: services.shareLinks,
    authenticate: (credential) => auth.fromCredential(credential),
    files: {
      withFiles: (branchId, fn) =>
        branchRuntime.enqueue(
          branchId,
          () => headRef(database.db, branchId),
          (sandbox) => fn(sandbox.files),
        ),
      filesNow: (branchId) => branchRuntime.filesNow(branchId),
    },
    graceMs: config.collabUnloadGraceMs,
    maxFileBytes: config.collabMaxFileBytes,
    fileFlushMs: config.collabFileFlushMs,
    limits: config.collabLimits,
    // Sockets per user are counted over every instance (in memory without Redis/Upstash).
    counters: shared.runCounters,
    // Several instances (a shared bus): rooms follow each other through the bus and the update log.
    replicate: shared.kind !== "memory",
  });
  // Open file rooms are written to the workspace before a branch's queued work and read back after.
  branchRuntime.setHooks({
    before: (branchId, files) => collab.flushBranch(branchId, files),
    after: (branchId, files) => collab.syncBranch(branchId, files),
  });
  metrics?.observeLive(agents, collab);
  metrics?.observeSandboxes(sandboxes.names, branchRuntime);
  // An idle branch's sandbox goes only after its live agent stopped and its state is kept.
  branchRuntime.setBeforeDrop(beforeIdleDrop({ db: database.db, bus, agents, log }));
  const app = createApp({
    config,
    schema,
    services,
    auth,
    collab,
    metrics,
    cluster: cluster.ownership.forwards ? cluster.routes(ownerOperations(branchRuntime, runner)) : null,
  });
  const server = runtime.serve({
    hostname: config.host,
    port: config.port,
    fetch: profile.guard(app.fetch),
    // The transport cap sits far above the app's own limit so the app answers with a typed error;
    // the app rejects on Content-Length at once and stops reading a chunked body at its limit.
    maxRequestBodySize: Math.max(config.limits.maxBodyBytes * 4, 128 * 1024 * 1024),
    // No WebSocket message may exceed what some socket can take: the largest collaboration room
    // (whose own check answers 4413 with a reason) or a request body (graphql-ws), plus framing.
    maxSocketMessageBytes:
      Math.max(config.limits.maxBodyBytes, config.collabLimits.chatBytes, config.collabLimits.fileRoomBytes) +
      64 * 1024,
  });
  const metricsServer = metrics?.listen(runtime) ?? null;
  const url = `http://${server.hostname.includes(":") ? `[${server.hostname}]` : server.hostname}:${server.port}`;
  // PORT=0 (tests, benchmarks) picks the port now: links handed out (agentUrl, share links) use it.
  if (/:0\/?$/.test(services.publicUrl)) services.publicUrl = url;
  await cluster.start(server.hostname, server.port);
  log.info("listening", {
    url,
    graphql: `${url}/graphql`,
    database: redact(config.database.url),
    runtime: runtime.name,
  });

  let stopping: Promise<void> | undefined;
  return {
    url,
    port: server.port,
    tokens,
    collabRooms: () => collab.loadedRooms,
    metricsUrl: metricsServer && `http://${metricsServer.hostname}:${metricsServer.port}`,
    agents,
    stop() {
      stopping ??= (async () => {
        const stopped = server.stop(false);
        runner.abortAll();
        await app.close();
        await Promise.race([stopped, new Promise((r) => setTimeout(r, 1000))]);
        await server.stop(true);
        await metricsServer?.stop(true);
        runQuota.close();
        await collab.close();
        presence.close();
        await agents?.close();
        await branchRuntime.close();
        await cluster.close();
        // After the cluster, which releases its leases through the shared store's connection.
        await shared.close();
        await gateway?.close();
        await sandboxes.close();
        await diffPool.close();
        await auth.close();
        database.close();
        log.info("stopped");
      })();
      return stopping;
    },
  };
}

function redact(url: string): string {
  return url.replace(/\/\/[^@/]*@/, "//***@");
}
