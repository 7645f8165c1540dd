// Share links: signed, expiring tokens granting EDITOR or VIEWER in one session, each backed by a
// share_links row (the token's `lid` claim) so owners can list and revoke them. A token is honoured
// only while its row exists (it goes with its session), is not revoked and has not expired; tokens
// minted before links had rows (no `lid`) cannot be revoked, so they are refused: owners make new ones.
import { and, desc, eq, isNull } from "drizzle-orm";
import { topics } from "../bus/bus.ts";
import type { Db } from "../db/client.ts";
import { newId } from "../db/ids.ts";
import { type Role, type ShareLinkRow, shareLinks } from "../db/schema.ts";
import { requireOwnerToRead, requireRole } from "./access.ts";
import { type AudienceTokens, type Context, requireViewer } from "./context.ts";
import { badInput, notFound } from "./errors.ts";

const SHARE_AUDIENCE = "opencode.cloud/share";
const DEFAULT_LINK_SECONDS = 7 * 24 * 3600;
const MAX_LINK_SECONDS = 90 * 24 * 3600;

export interface ShareLinkResult {
  id: string;
  token: string;
  url: string;
  role: Role;
  expiresAt: Date;
}

export type ShareLinkRefusal = "invalid" | "expired" | "outdated" | "unknown" | "revoked";

/** Why a share-link token opens nothing; `reason` is what a client can act on. */
export class ShareLinkRefused extends Error {
  constructor(readonly reason: ShareLinkRefusal) {
    super(
      {
        invalid: "This is not a valid share link",
        expired: "This share link has expired",
        outdated: "This share link predates revocable links; ask the owner for a new one",
        unknown: "This share link's session no longer exists",
        revoked: "This share link was revoked",
      }[reason],
    );
  }
}

export async function createShareLink(
  ctx: Context,
  args: { sessionId: string; role: Role; expiresInSeconds?: number | null },
): Promise<ShareLinkResult> {
  await requireRole(ctx, args.sessionId, "OWNER");
  const viewer = requireViewer(ctx);
  if (args.role === "OWNER")
    throw badInput("Links can grant EDITOR or VIEWER; share ownership by email", "role");
  const seconds = args.expiresInSeconds ?? DEFAULT_LINK_SECONDS;
  if (!Number.isInteger(seconds) || seconds < 60 || seconds > MAX_LINK_SECONDS) {
    throw badInput(`expiresInSeconds must be 60 to ${MAX_LINK_SECONDS}`, "expiresInSeconds");
  }
  const expiresAt = new Date(Date.now() + seconds * 1000);
  const id = newId("lnk");
  await ctx.db.insert(shareLinks).values({
    id,
    sessionId: args.sessionId,
    role: args.role,
    createdById: viewer.userId,
    createdAt: new Date(),
    expiresAt,
  });
  const token = await ctx.shareLinks.sign(
    SHARE_AUDIENCE,
    { sid: args.sessionId, role: args.role, lid: id },
    expiresAt.getTime(),
  );
  // The link opens GraphiQL with the join mutation ready to run.
  const query = `mutation Join {\n  joinSession(token: "${token}") { id title viewerRole }\n}\n`;
  const url = `${ctx.publicUrl}/graphql?query=${encodeURIComponent(query)}`;
  return { id, token, url, role: args.role, expiresAt };
}

/** The session's links, newest first, revoked and expired ones included (owners only). */
export async function listShareLinks(ctx: Context, sessionId: string): Promise<ShareLinkRow[]> {
  await requireOwnerToRead(ctx, sessionId);
  return ctx.db
    .select()
    .from(shareLinks)
    .where(eq(shareLinks.sessionId, sessionId))
    .orderBy(desc(shareLinks.createdAt), desc(shareLinks.id));
}

/** One link as its session's owners see it (the just-created link of createShareLink). */
export async function shareLinkOf(ctx: Context, id: string): Promise<ShareLinkRow> {
  const row = await ctx.loaders.shareLink.load(id);
  if (!row) throw notFound("Share link");
  await requireOwnerToRead(ctx, row.sessionId, "Share link");
  return row;
}

/**
 * Revokes a link (owners only): it opens nothing any more, and sockets and streams opened with it
 * end on every instance. Members who already joined through it stay members (removeMember them).
 */
export async function revokeShareLink(ctx: Context, id: string): Promise<ShareLinkRow> {
  const [link] = await ctx.db.select().from(shareLinks).where(eq(shareLinks.id, id)).limit(1);
  if (!link) throw notFound("Share link");
  await requireRole(ctx, link.sessionId, "OWNER", "Share link");
  if (link.revokedAt) return link;
  const [revoked] = await ctx.db
    .update(shareLinks)
    .set({ revokedAt: new Date() })
    .where(and(eq(shareLinks.id, id), isNull(shareLinks.revokedAt)))
    .returning();
  await ctx.bus.publish(topics.shareLinkRevoked, { sessionId: link.sessionId, linkId: id });
  return revoked ?? link;
}

/** The live link a token stands for; throws ShareLinkRefused. Used by joinSession and collab. */
export async function verifyShareLink(
  deps: { db: Db; shareLinks: AudienceTokens },
  token: string,
  now = Date.now(),
): Promise<ShareLinkRow> {
  const claims = await deps.shareLinks.verify(SHARE_AUDIENCE, token).catch((error: { reason?: string }) => {
    throw new ShareLinkRefused(error?.reason === "expired" ? "expired" : "invalid");
  });
  if (typeof claims.lid !== "string") throw new ShareLinkRefused("outdated");
  const [link] = await deps.db.select().from(shareLinks).where(eq(shareLinks.id, claims.lid)).limit(1);
  if (!link) throw new ShareLinkRefused("unknown");
  if (link.sessionId !== claims.sid || link.role !== claims.role || link.role === "OWNER")
    throw new ShareLinkRefused("invalid");
  if (link.revokedAt) throw new ShareLinkRefused("revoked");
  if (link.expiresAt.getTime() <= now) throw new ShareLinkRefused("expired");
  return link;
}
