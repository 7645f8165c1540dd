// `opencode attach` to a branch (Branch.agentUrl): who may use the branch's live agent with a
// credential, the turns attached clients start (PROMPT runs, like `prompt`), and how long a stream
// opened through the proxy may last (as long as the access it was opened with). api/agent-proxy.ts
// speaks HTTP; agent/live/attach-policy.ts says what each opencode request is.
import { and, eq } from "drizzle-orm";
import type { ForwardedAnswer } from "../agent/live/branch-server.ts";
import { type Bus, topics } from "../bus/bus.ts";
import { type BranchRow, branches, members, type Role, type ShareLinkRow } from "../db/schema.ts";
import { atLeast } from "./access.ts";
import type { AccessWatchHub } from "./access-watch.ts";
import type { Context, Viewer } from "./context.ts";
import { AppError, notFound } from "./errors.ts";
import type { SessionEventPayload } from "./events.ts";
import { modelFor } from "./model-keys.ts";
import { startCounted } from "./run-quota.ts";
import type { ForwardedTurn } from "./runner.ts";
import { ShareLinkRefused, verifyShareLink } from "./share-links.ts";

/** The longest run input recorded (prompt's own limit). */
const MAX_INPUT = 100_000;

/** What a credential may do on one branch's agent. */
export interface AttachAccess {
  branch: BranchRow;
  /** The role it acts with (an API key without the write scope reads only). */
  role: Role;
  viewer: Viewer | null;
  /** The share link it is, when it is one. */
  link: ShareLinkRow | null;
  /** Whom runs are recorded for and metered to (a share link's runs: the link's creator). */
  userId: string;
}

/**
 * The access a credential (an API key, a JWT or a share-link token) gives to a branch's agent.
 * UNAUTHENTICATED when the credential is nothing valid; NOT_FOUND when it is valid but opens nothing
 * here, exactly as for a branch that does not exist.
 */
export async function attachAccess(
  ctx: Pick<Context, "db" | "shareLinks">,
  authenticate: (credential: string) => Promise<Viewer>,
  branchId: string,
  credential: string,
): Promise<AttachAccess> {
  let viewer: Viewer | null = null;
  let link: ShareLinkRow | null = null;
  try {
    viewer = await authenticate(credential);
  } catch (error) {
    const found = await verifyShareLink(ctx, credential).catch((refused: unknown) => {
      if (!(refused instanceof ShareLinkRefused)) throw refused;
      return refused;
    });
    if (found instanceof ShareLinkRefused) {
      if (found.reason === "invalid")
        throw error instanceof AppError ? error : new AppError("UNAUTHENTICATED", "Invalid credential");
      if (found.reason === "unknown") throw notFound("Branch");
      throw new AppError("UNAUTHENTICATED", found.message, { reason: found.reason });
    }
    link = found;
  }
  const [branch] = await ctx.db.select().from(branches).where(eq(branches.id, branchId)).limit(1);
  if (!branch) throw notFound("Branch");
  if (link) {
    if (link.sessionId !== branch.sessionId) throw notFound("Branch");
    return { branch, role: link.role, viewer: null, link, userId: link.createdById };
  }
  const [member] = await ctx.db
    .select({ role: members.role })
    .from(members)
    .where(and(eq(members.sessionId, branch.sessionId), eq(members.userId, viewer!.userId)));
  if (!member) throw notFound("Branch");
  const { credential: used } = viewer!;
  const readOnly = used.kind === "apiKey" && !used.scopes.includes("write");
  return {
    branch,
    role: readOnly ? "VIEWER" : member.role,
    viewer,
    link: null,
    userId: viewer!.userId,
  };
}

/** FORBIDDEN unless the access allows `need`. */
export function requireAttachRole(access: AttachAccess, need: Role): void {
  if (!atLeast(access.role, need))
    throw new AppError("FORBIDDEN", `This needs the ${need} role in the session; you are ${access.role}`);
}

/**
 * A turn an attached client asked for (its own request, forwarded as is), as a PROMPT run with the
 * client's text as input: checked like `prompt` (storage quota, agent and model available, run
 * quotas), queued
 * with the branch's runs, streamed, metered and ended as a snapshot. Resolves with opencode's answer
 * once the turn is over (null when it never reached the agent: aborted while queued, failed early).
 */
export async function attachedTurn(
  ctx: Context,
  access: AttachAccess,
  input: string,
  request: ForwardedTurn["request"],
): Promise<{ runId: string; answer: Promise<ForwardedAnswer | null> }> {
  requireAttachRole(access, "EDITOR");
  const { branch } = access;
  await ctx.quota.assertCanStore(branch.sessionId);
  const session = await ctx.loaders.session.load(branch.sessionId);
  if (!session) throw notFound("Branch");
  const unavailable = ctx.agentUnavailable(session.provider);
  if (unavailable) throw new AppError("UNAVAILABLE", unavailable);
  const upstream = await modelFor(ctx, access.userId);
  let onAnswer!: (answer: ForwardedAnswer | null) => void;
  const answered = new Promise<ForwardedAnswer | null>((resolve) => {
    onAnswer = resolve;
  });
  // The run's input is what the client asked for (its request goes to opencode whole, within the
  // body limit); as long as `prompt` allows.
  const text = (input.trim() || "(an opencode client's request)").slice(0, MAX_INPUT);
  // The run quotas (runs at once, run-seconds per day) count it like any prompt.
  const ticket = await ctx.runQuota.begin(access.userId, null);
  const run = await startCounted(ctx.runner, ticket, {
    kind: "PROMPT",
    sessionId: branch.sessionId,
    branchId: branch.id,
    userId: access.userId,
    input: text,
    timeoutMs: null,
    upstream,
    forward: { request, onAnswer },
  });
  const user = await ctx.loaders.user.load(access.userId);
  await ctx.chat
    .append(branch.sessionId, {
      author: { kind: "user", id: access.userId, name: user?.name ?? user?.email ?? "user" },
      text,
      at: new Date().toISOString(),
      runId: run.id,
    })
    .catch((error) => ctx.log.warn("could not record the prompt in the chat", { error: String(error) }));
  return { runId: run.id, answer: Promise.race([answered, ctx.runner.wait(run.id).then(() => null)]) };
}

/**
 * Calls `onLost` once when the access a long request (an event stream) was opened with ends: the
 * credential dies (revoked key, signed out, expired token), the member is removed or demoted below
 * `need`, the share link is revoked or expires, or the session is deleted. Returns a stop function.
 */
export function watchAttachAccess(
  hub: AccessWatchHub,
  bus: Bus,
  access: AttachAccess,
  need: Role,
  onLost: (error: AppError) => void,
): () => void {
  const { sessionId } = access.branch;
  if (access.viewer) {
    const live = hub.open(access.viewer);
    live.need(sessionId, need);
    void live.whenLost().then(onLost);
    return () => live.end();
  }
  const link = access.link!;
  const controller = new AbortController();
  const lose = (error: AppError) => {
    if (controller.signal.aborted) return;
    controller.abort();
    onLost(error);
  };
  const revoked = bus.subscribe<{ linkId: string }>(topics.shareLinkRevoked, { signal: controller.signal });
  void (async () => {
    for await (const { payload } of revoked)
      if (payload.linkId === link.id)
        return lose(new AppError("UNAUTHENTICATED", "This share link was revoked", { reason: "revoked" }));
  })().catch(() => {});
  const events = bus.subscribe<SessionEventPayload>(topics.session(sessionId), { signal: controller.signal });
  void (async () => {
    for await (const { payload } of events)
      if (payload.kind === "SESSION_DELETED") return lose(notFound("Branch"));
  })().catch(() => {});
  // setTimeout's longest delay is ~24.8 days; links live up to 90: re-armed until due.
  let timer: ReturnType<typeof setTimeout> | undefined;
  const arm = () => {
    const left = link.expiresAt.getTime() - Date.now();
    if (left <= 0)
      return lose(new AppError("UNAUTHENTICATED", "This share link has expired", { reason: "expired" }));
    timer = setTimeout(arm, Math.min(left, 2 ** 31 - 1));
    (timer as { unref?: () => void }).unref?.();
  };
  arm();
  return () => {
    clearTimeout(timer);
    controller.abort();
  };
}
