// Sessions, members and sharing (by email, by revocable link), with their root fields and the
// session event stream.
import type { ShareLinkRow } from "../db/schema.ts";
import * as branches from "../resolvers/branch.ts";
import { SESSION_EVENT_KINDS, type SessionEventPayload } from "../resolvers/events.ts";
import * as runs from "../resolvers/run.ts";
import * as sessions from "../resolvers/session.ts";
import * as links from "../resolvers/share-links.ts";
import * as snapshots from "../resolvers/snapshot.ts";
import { builder } from "./builder.ts";
import { connection } from "./connection.ts";
import { BranchRef, MemberRef, RoleEnum, RunRef, SessionRef, SnapshotRef } from "./refs.ts";
import { UserRef } from "./user.ts";

const SnapshotConnection = connection("Snapshot", SnapshotRef);
const RunConnection = connection("Run", RunRef);
const SessionConnection = connection("Session", SessionRef);

export { RunConnection };

SessionRef.implement({
  description: "A workspace with a tree of snapshots and branches, shared by its members.",
  fields: (t) => ({
    id: t.exposeID("id"),
    title: t.exposeString("title"),
    createdAt: t.expose("createdAt", { type: "DateTime" }),
    provider: t.exposeString("provider"),
    owner: t.field({
      type: UserRef,
      resolve: async (s, _a, ctx) => (await ctx.loaders.user.load(s.ownerId))!,
    }),
    viewerRole: t.field({
      type: RoleEnum,
      nullable: true,
      resolve: (s, _a, ctx) => ctx.loaders.role.load(s.id),
    }),
    mainBranch: t.field({
      type: BranchRef,
      resolve: async (s, _a, ctx) => (await ctx.loaders.branch.load(s.mainBranchId!))!,
    }),
    branches: t.field({
      type: [BranchRef],
      resolve: (s, _a, ctx) => ctx.loaders.branchesOfSession.load(s.id),
    }),
    rootSnapshot: t.field({
      type: SnapshotRef,
      resolve: async (s, _a, ctx) => (await ctx.loaders.snapshot.load(s.rootSnapshotId!))!,
    }),
    snapshots: t.field({
      type: SnapshotConnection,
      description: "The whole snapshot tree, flat and oldest first (each snapshot after its parent).",
      args: { first: t.arg.int(), after: t.arg.string() },
      resolve: (s, args, ctx) => snapshots.sessionSnapshots(ctx, s.id, args),
    }),
    members: t.field({ type: [MemberRef], resolve: (s, _a, ctx) => sessions.listMembers(ctx, s.id) }),
    shareLinks: t.field({
      type: [SessionShareLinkRef],
      description:
        "Every share link made for this session, newest first, revoked and expired ones too (owners only).",
      resolve: (s, _a, ctx) => links.listShareLinks(ctx, s.id),
    }),
    runs: t.field({
      type: RunConnection,
      description: "Runs of every branch, newest first.",
      args: { first: t.arg.int(), after: t.arg.string() },
      resolve: (s, args, ctx) => runs.listRuns(ctx, { sessionId: s.id }, args),
    }),
    eventCursor: t.string({
      description: "Pass as sessionEvents(after:) to receive every event after this read, none missed.",
      resolve: (s, _a, ctx) => sessions.eventCursor(ctx, s.id),
    }),
  }),
});

MemberRef.implement({
  fields: (t) => ({
    user: t.field({ type: UserRef, resolve: async (m, _a, ctx) => (await ctx.loaders.user.load(m.userId))! }),
    role: t.field({ type: RoleEnum, resolve: (m) => m.role }),
    since: t.expose("createdAt", { type: "DateTime" }),
  }),
});

const ShareLinkRef = builder.objectRef<links.ShareLinkResult>("ShareLink").implement({
  description: "A new share link. Its token is shown only here; Session.shareLinks lists the link by id.",
  fields: (t) => ({
    id: t.exposeID("id", { description: "Revoke it with revokeShareLink(id)." }),
    token: t.exposeString("token", { description: "Give it to joinSession." }),
    url: t.exposeString("url", { description: "Opens GraphiQL with the join mutation ready to run." }),
    role: t.field({ type: RoleEnum, resolve: (l) => l.role }),
    expiresAt: t.expose("expiresAt", { type: "DateTime", nullable: true }),
  }),
});

const SessionShareLinkRef = builder.objectRef<ShareLinkRow>("SessionShareLink").implement({
  description: "A share link of a session, as its owners see it (the token itself is never shown again).",
  fields: (t) => ({
    id: t.exposeID("id"),
    role: t.field({ type: RoleEnum, resolve: (l) => l.role }),
    createdBy: t.field({
      type: UserRef,
      nullable: true,
      resolve: (l, _a, ctx) => ctx.loaders.user.load(l.createdById),
    }),
    createdAt: t.expose("createdAt", { type: "DateTime" }),
    expiresAt: t.expose("expiresAt", { type: "DateTime" }),
    revokedAt: t.expose("revokedAt", { type: "DateTime", nullable: true }),
    active: t.boolean({
      description: "Not revoked and not expired: the link still lets people join and open rooms.",
      resolve: (l) => l.revokedAt === null && l.expiresAt.getTime() > Date.now(),
    }),
  }),
});

const SessionEventKind = builder.enumType("SessionEventKind", { values: SESSION_EVENT_KINDS });

const SessionEventRef = builder
  .objectRef<SessionEventPayload & { cursor: string }>("SessionEvent")
  .implement({
    description: "Something changed in a session. Objects are null when they no longer exist.",
    fields: (t) => ({
      cursor: t.exposeString("cursor", { description: "Resume with sessionEvents(after: cursor)." }),
      kind: t.field({ type: SessionEventKind, resolve: (e) => e.kind }),
      at: t.field({ type: "DateTime", resolve: (e) => new Date(e.at) }),
      sessionId: t.exposeID("sessionId"),
      branch: t.field({
        type: BranchRef,
        nullable: true,
        resolve: (e, _a, ctx) => (e.branchId ? ctx.loaders.branch.load(e.branchId) : null),
      }),
      snapshot: t.field({
        type: SnapshotRef,
        nullable: true,
        resolve: (e, _a, ctx) => (e.snapshotId ? ctx.loaders.snapshot.load(e.snapshotId) : null),
      }),
      run: t.field({
        type: RunRef,
        nullable: true,
        resolve: (e, _a, ctx) => (e.runId ? ctx.loaders.run.load(e.runId) : null),
      }),
      user: t.field({
        type: UserRef,
        nullable: true,
        resolve: (e, _a, ctx) => (e.userId ? ctx.loaders.user.load(e.userId) : null),
      }),
    }),
  });

const CreateSessionInput = builder.inputType("CreateSessionInput", {
  fields: (t) => ({
    title: t.string({ required: true }),
    repoUrl: t.string({
      description: "A git repository: http(s), file:// or a path on the server (if allowed).",
    }),
    ref: t.string({ description: "Branch or tag to check out (with repoUrl)." }),
    files: t.field({
      type: "JSON",
      description: 'Initial files: {"path": "text"} or {"path": {"content", "encoding": "base64", "mode"}}.',
    }),
    provider: t.string({ description: "Sandbox provider; the server's default when omitted (see health)." }),
  }),
});

builder.queryFields((t) => ({
  session: t.field({
    type: SessionRef,
    args: { id: t.arg.id({ required: true }) },
    resolve: (_r, args, ctx) => sessions.session(ctx, String(args.id)),
  }),
  sessions: t.field({
    type: SessionConnection,
    description: "Sessions you are a member of, newest first.",
    args: { first: t.arg.int(), after: t.arg.string() },
    resolve: (_r, args, ctx) => sessions.listSessions(ctx, args),
  }),
}));

builder.mutationFields((t) => ({
  createSession: t.field({
    type: SessionRef,
    args: { input: t.arg({ type: CreateSessionInput, required: true }) },
    resolve: (_r, args, ctx) => sessions.createSession(ctx, args.input),
  }),
  deleteSession: t.boolean({
    description: "Deletes the session, stops its sandboxes and frees the storage only it used (owners only).",
    args: { id: t.arg.id({ required: true }) },
    resolve: (_r, args, ctx) => sessions.deleteSession(ctx, String(args.id)),
  }),
  shareSession: t.field({
    type: MemberRef,
    description: "Adds a registered user (by email) with a role, or changes their role (owners only).",
    args: {
      sessionId: t.arg.id({ required: true }),
      email: t.arg.string({ required: true }),
      role: t.arg({ type: RoleEnum, required: true }),
    },
    resolve: (_r, args, ctx) => sessions.shareSession(ctx, { ...args, sessionId: String(args.sessionId) }),
  }),
  removeMember: t.boolean({
    description:
      "Removes a member (owners only): their subscriptions to the session end and their collaboration sockets close at once, as do sockets opened with share links of the session (those reconnect only with a link that is still valid; revoke the links the member knows).",
    args: { sessionId: t.arg.id({ required: true }), userId: t.arg.id({ required: true }) },
    resolve: (_r, args, ctx) =>
      sessions.removeMember(ctx, { sessionId: String(args.sessionId), userId: String(args.userId) }),
  }),
  createShareLink: t.field({
    type: ShareLinkRef,
    description: "A signed, expiring link granting EDITOR or VIEWER to whoever joins with it (owners only).",
    args: {
      sessionId: t.arg.id({ required: true }),
      role: t.arg({ type: RoleEnum, required: true }),
      expiresInSeconds: t.arg.int(),
    },
    resolve: (_r, args, ctx) => links.createShareLink(ctx, { ...args, sessionId: String(args.sessionId) }),
  }),
  revokeShareLink: t.field({
    type: SessionShareLinkRef,
    description:
      "Revokes a share link (owners only): it opens nothing any more, and collaboration sockets opened with it close at once. People who already joined with it stay members: removeMember them.",
    args: { id: t.arg.id({ required: true }) },
    resolve: (_r, args, ctx) => links.revokeShareLink(ctx, String(args.id)),
  }),
  joinSession: t.field({
    type: SessionRef,
    args: { token: t.arg.string({ required: true }) },
    resolve: (_r, args, ctx) => sessions.joinSession(ctx, args.token),
  }),
  promote: t.field({
    type: SessionRef,
    description: "Makes the branch the session's main branch (owners only).",
    args: { branchId: t.arg.id({ required: true }) },
    resolve: (_r, args, ctx) => branches.promote(ctx, String(args.branchId)),
  }),
}));

builder.subscriptionFields((t) => ({
  sessionEvents: t.field({
    type: SessionEventRef,
    description:
      "Snapshots added, heads moved, branches created/deleted, runs queued/started/finished, members changed.",
    args: {
      sessionId: t.arg.id({ required: true }),
      after: t.arg.string({ description: "A cursor from Session.eventCursor or an event." }),
    },
    subscribe: (_r, args, ctx) => sessions.sessionEvents(ctx, String(args.sessionId), args.after),
    resolve: (event) => event,
  }),
}));
