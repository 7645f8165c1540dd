// Global Object Identification (`node(id:)`, `nodes(ids:)`): an object by its public id, checked exactly
// as the typed field that serves it (session(id:), branch(id:), User.apiKeys, Session.shareLinks...),
// so a stranger gets the same NOT_FOUND there as here. Every lookup goes through the request's
// dataloaders: `nodes` over many ids costs one query per kind, plus one for the viewer's roles.

import { type IdKind, idKind } from "../db/ids.ts";
import type {
  ApiKeyRow,
  BranchRow,
  ExplorationRow,
  RunRow,
  SessionRow,
  ShareLinkRow,
  SnapshotRow,
  UserRow,
} from "../db/schema.ts";
import { loadBranch, loadSnapshot } from "./branch.ts";
import { type Context, requireScope } from "./context.ts";
import { notFound } from "./errors.ts";
import { loadExploration } from "./exploration.ts";
import { loadRun } from "./run.ts";
import { session } from "./session.ts";
import { shareLinkOf } from "./share-links.ts";

export type NodeRow =
  | UserRow
  | ApiKeyRow
  | SessionRow
  | BranchRow
  | SnapshotRow
  | RunRow
  | ExplorationRow
  | ShareLinkRow;

/** Ids `nodes(ids:)` takes at once. */
export const MAX_NODE_IDS = 100;

const LOADERS: Record<IdKind, (ctx: Context, id: string) => Promise<NodeRow>> = {
  usr: user,
  key: apiKey,
  ses: session,
  br: (ctx, id) => loadBranch(ctx, id, "VIEWER"),
  snp: (ctx, id) => loadSnapshot(ctx, id, "VIEWER"),
  run: (ctx, id) => loadRun(ctx, id, "VIEWER"),
  exp: loadExploration,
  lnk: shareLinkOf,
};

/** The object an id names, when the viewer may see it; NOT_FOUND (as for a missing id) when not. */
export function loadNode(ctx: Context, id: string): Promise<NodeRow> {
  const load = LOADERS[idKind(id) as IdKind];
  if (!load) return Promise.reject(notFound("Node"));
  return load(ctx, id);
}

/**
 * A user is visible to themself and to the members of the sessions they are in: the people a
 * session's `owner`, `members` and runs already show.
 */
async function user(ctx: Context, id: string): Promise<UserRow> {
  const viewer = requireScope(ctx, "read");
  const visible = viewer.userId === id || (await ctx.loaders.sharesSessionWith.load(id));
  const row = visible ? await ctx.loaders.user.load(id) : null;
  if (!row) throw notFound("User");
  return row;
}

/** Your own API keys only, as User.apiKeys lists them. */
async function apiKey(ctx: Context, id: string): Promise<ApiKeyRow> {
  const viewer = requireScope(ctx, "read");
  const row = await ctx.loaders.apiKey.load(id);
  if (!row || row.userId !== viewer.userId) throw notFound("API key");
  return row;
}
