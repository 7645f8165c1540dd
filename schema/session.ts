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
import { connection, relayPage } from "./connection.ts";
import { BranchRef, MemberRef, RoleEnum, RunRef, SessionRef, SnapshotRef } from "./refs.ts";
import { UserRef } from "./user.ts";

const SnapshotConnection = connection("Snapshot", SnapshotRef, "snapshots");
const RunConnection = connection("Run", RunRef, "runs");
const SessionConnection = connection("Session", SessionRef, "sessions");

export { RunConnection };

builder.node(SessionRef, {
  description: "A workspace with a tree of snapshots and branches, shared by its members.",
  id: { resolve: (s) => s.id },
  fields: (t) => ({
    title: t.exposeString("title", { description: "The title given at creation." }),
    createdAt: t.expose("createdAt", { type: "DateTime", description: "When the session was created." }),
    provider: t.exposeString("provider", {
      description: 'The sandbox provider its branches run on: "local" or "contree" (see health.providers).',
    }),
    owner: t.field({
      type: UserRef,
      description: "The user who created it (and may delete, share and promote).",
      resolve: async (s, _a, ctx) => (await ctx.loaders.user.load(s.ownerId))!,
    }),
    viewerRole: t.field({
      type: RoleEnum,
      nullable: true,
      description: "Your role in the session.",
      resolve: (s, _a, ctx) => ctx.loaders.role.load(s.id),
    }),
    mainBranch: t.field({
      type: BranchRef,
      description: "The branch promote made main (at first, the one created with the session).",
      resolve: async (s, _a, ctx) => (await ctx.loaders.branch.load(s.mainBranchId!))!,
    }),
    branches: t.field({
      type: [BranchRef],
      description: "Every branch, oldest first.",
      resolve: (s, _a, ctx) => ctx.loaders.branchesOfSession.load(s.id),
    }),
    rootSnapshot: t.field({
      type: SnapshotRef,
      description: "The first snapshot: the files the session was created with.",
      resolve: async (s, _a, ctx) => (await ctx.loaders.snapshot.load(s.rootSnapshotId!))!,
    }),
    snapshots: t.connection(
      {
        type: SnapshotRef,
        description:
          "The whole snapshot tree, flat and oldest first (each snapshot after its parent); 100 a page by default.",
        resolve: async (s, args, ctx) => relayPage(await snapshots.sessionSnapshots(ctx, s.id, args)),
      },
      SnapshotConnection,
    ),
    members: t.field({
      type: [MemberRef],
      description: "Everyone with a role in the session, the owner included.",
      resolve: (s, _a, ctx) => sessions.listMembers(ctx, s.id),
    }),
    shareLinks: t.field({
      type: [SessionShareLinkRef],
      description:
        "Every share link made for this session, newest first, revoked and expired ones too (owners only).",
      resolve: (s, _a, ctx) => links.listShareLinks(ctx, s.id),
    }),
    runs: t.connection(
      {
        type: RunRef,
        description: "Runs of every branch, newest first; 20 a page by default.",
        resolve: async (s, args, ctx) => relayPage(await runs.listRuns(ctx, { sessionId: s.id }, args)),
      },
      RunConnection,
    ),
    eventCursor: t.string({
      description: "Pass as sessionEvents(after:) to receive every event after this read, none missed.",
      resolve: (s, _a, ctx) => sessions.eventCursor(ctx, s.id),
    }),
  }),
});

MemberRef.implement({
  description: "Someone with a role in a session.",
  fields: (t) => ({
    user: t.field({
      type: UserRef,
      description: "Who.",
      resolve: async (m, _a, ctx) => (await ctx.loaders.user.load(m.userId))!,
    }),
    role: t.field({ type: RoleEnum, description: "What they may do.", resolve: (m) => m.role }),
    since: t.expose("createdAt", { type: "DateTime", description: "When they became a member." }),
  }),
});

const ShareLinkRef = builder.objectRef<links.ShareLinkResult>("ShareLink").implement({
  description: "A new share link. Its token is shown only here; Session.shareLinks lists the link by id.",
  fields: (t) => ({
    id: t.exposeID("id", {
      description: "The link's id (the same as link.id).",
      // Two types under one id would confuse a normalising client (Relay keys records by id).
      deprecationReason: "Select link { id }: the SessionShareLink node with this id.",
    }),
    link: t.field({
      type: SessionShareLinkRef,
      description: "The link as Session.shareLinks lists it (revoke it with revokeShareLink(link.id)).",
      resolve: (l, _a, ctx) => links.shareLinkOf(ctx, l.id),
    }),
    token: t.exposeString("token", { description: "Give it to joinSession." }),
    url: t.exposeString("url", { description: "Opens GraphiQL with the join mutation ready to run." }),
    role: t.field({
      type: RoleEnum,
      description: "The role joining with it grants.",
      resolve: (l) => l.role,
    }),
    expiresAt: t.expose("expiresAt", {
      type: "DateTime",
      nullable: true,
      description: "When the link stops working.",
    }),
  }),
});

const SessionShareLinkRef = builder.node(builder.objectRef<ShareLinkRow>("SessionShareLink"), {
  description: "A share link of a session, as its owners see it (the token itself is never shown again).",
  id: { resolve: (l) => l.id },
  fields: (t) => ({
    role: t.field({
      type: RoleEnum,
      description: "The role joining with it grants.",
      resolve: (l) => l.role,
    }),
    createdBy: t.field({
      type: UserRef,
      nullable: true,
      description: "The owner who made it (null if that account is gone).",
      resolve: (l, _a, ctx) => ctx.loaders.user.load(l.createdById),
    }),
    createdAt: t.expose("createdAt", { type: "DateTime", description: "When it was made." }),
    expiresAt: t.expose("expiresAt", { type: "DateTime", description: "When it stops working." }),
    revokedAt: t.expose("revokedAt", {
      type: "DateTime",
      nullable: true,
      description: "When revokeShareLink revoked it; null if it was not.",
    }),
    active: t.boolean({
      description: "Not revoked and not expired: the link still lets people join and open rooms.",
      resolve: (l) => l.revokedAt === null && l.expiresAt.getTime() > Date.now(),
    }),
  }),
});

const SESSION_EVENT_DESCRIPTIONS: Record<(typeof SESSION_EVENT_KINDS)[number], string> = {
  SNAPSHOT_ADDED: "A snapshot was added to the tree (snapshot).",
  HEAD_MOVED: "A branch's head moved (branch, snapshot).",
  BRANCH_CREATED: "A branch was created (branch).",
  BRANCH_DELETED: "A branch was deleted (branch is null: it no longer exists).",
  RUN_QUEUED: "A run was queued (run).",
  RUN_STARTED: "A run started (run).",
  RUN_FINISHED: "A run ended, in any status (run).",
  MAIN_CHANGED: "Another branch became main (branch).",
  MEMBER_CHANGED: "Someone joined, changed role or was removed (user).",
  SESSION_DELETED: "The session was deleted; the stream ends.",
};

const SessionEventKind = builder.enumType("SessionEventKind", {
  description: "What happened in a session.",
  values: Object.fromEntries(
    SESSION_EVENT_KINDS.map((kind) => [kind, { description: SESSION_EVENT_DESCRIPTIONS[kind] }]),
  ) as Record<(typeof SESSION_EVENT_KINDS)[number], { description: string }>,
});

const SessionEventRef = builder
  .objectRef<SessionEventPayload & { cursor: string }>("SessionEvent")
  .implement({
    description: "Something changed in a session. Objects are null when they no longer exist.",
    fields: (t) => ({
      cursor: t.exposeString("cursor", { description: "Resume with sessionEvents(after: cursor)." }),
      kind: t.field({ type: SessionEventKind, description: "What happened.", resolve: (e) => e.kind }),
      at: t.field({ type: "DateTime", description: "When.", resolve: (e) => new Date(e.at) }),
      sessionId: t.exposeID("sessionId", { description: "The session it happened in." }),
      branch: t.field({
        type: BranchRef,
        nullable: true,
        description: "The branch concerned, if any.",
        resolve: (e, _a, ctx) => (e.branchId ? ctx.loaders.branch.load(e.branchId) : null),
      }),
      snapshot: t.field({
        type: SnapshotRef,
        nullable: true,
        description: "The snapshot concerned, if any.",
        resolve: (e, _a, ctx) => (e.snapshotId ? ctx.loaders.snapshot.load(e.snapshotId) : null),
      }),
      run: t.field({
        type: RunRef,
        nullable: true,
        description: "The run concerned, if any.",
        resolve: (e, _a, ctx) => (e.runId ? ctx.loaders.run.load(e.runId) : null),
      }),
      user: t.field({
        type: UserRef,
        nullable: true,
        description: "The member concerned (MEMBER_CHANGED), if any.",
        resolve: (e, _a, ctx) => (e.userId ? ctx.loaders.user.load(e.userId) : null),
      }),
    }),
  });

const CreateSessionInput = builder.inputType("CreateSessionInput", {
  description: "A new session: empty, from files, or from a git repository.",
  fields: (t) => ({
    title: t.string({ required: true, description: "A title for people to recognise it by." }),
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
    description: "A session you are a member of (NOT_FOUND otherwise).",
    args: { id: t.arg.id({ required: true, description: "The session's id (ses_…)." }) },
    resolve: (_r, args, ctx) => sessions.session(ctx, String(args.id)),
  }),
  sessions: t.connection(
    {
      type: SessionRef,
      description: "Sessions you are a member of, newest first; 20 a page by default.",
      resolve: async (_r, args, ctx) => relayPage(await sessions.listSessions(ctx, args)),
    },
    SessionConnection,
  ),
}));

builder.mutationFields((t) => ({
  createSession: t.field({
    type: SessionRef,
    description: "Creates a session (you are its owner) with a main branch and a root snapshot.",
    args: { input: t.arg({ type: CreateSessionInput, required: true, description: "What to start from." }) },
    resolve: (_r, args, ctx) => sessions.createSession(ctx, args.input),
  }),
  deleteSession: t.boolean({
    description: "Deletes the session, stops its sandboxes and frees the storage only it used (owners only).",
    args: { id: t.arg.id({ required: true, description: "The session's id." }) },
    resolve: (_r, args, ctx) => sessions.deleteSession(ctx, String(args.id)),
  }),
  shareSession: t.field({
    type: MemberRef,
    description: "Adds a registered user (by email) with a role, or changes their role (owners only).",
    args: {
      sessionId: t.arg.id({ required: true, description: "The session to share." }),
      email: t.arg.string({ required: true, description: "The registered user's email." }),
      role: t.arg({ type: RoleEnum, required: true, description: "The role to give them." }),
    },
    resolve: (_r, args, ctx) => sessions.shareSession(ctx, { ...args, sessionId: String(args.sessionId) }),
  }),
  removeMember: t.boolean({
    description:
      "Removes a member (owners only): their subscriptions to the session end and their collaboration sockets close at once, as do sockets opened with share links of the session (those reconnect only with a link that is still valid; revoke the links the member knows).",
    args: {
      sessionId: t.arg.id({ required: true, description: "The session." }),
      userId: t.arg.id({ required: true, description: "The member to remove." }),
    },
    resolve: (_r, args, ctx) =>
      sessions.removeMember(ctx, { sessionId: String(args.sessionId), userId: String(args.userId) }),
  }),
  createShareLink: t.field({
    type: ShareLinkRef,
    description: "A signed, expiring link granting EDITOR or VIEWER to whoever joins with it (owners only).",
    args: {
      sessionId: t.arg.id({ required: true, description: "The session to share." }),
      role: t.arg({ type: RoleEnum, required: true, description: "EDITOR or VIEWER (never OWNER)." }),
      expiresInSeconds: t.arg.int({
        description: "How long the link works: 60 s to 90 days (default 7 days).",
      }),
    },
    resolve: (_r, args, ctx) => links.createShareLink(ctx, { ...args, sessionId: String(args.sessionId) }),
  }),
  revokeShareLink: t.field({
    type: SessionShareLinkRef,
    description:
      "Revokes a share link (owners only): it opens nothing any more, and collaboration sockets opened with it close at once. People who already joined with it stay members: removeMember them.",
    args: { id: t.arg.id({ required: true, description: "The link's id (SessionShareLink.id)." }) },
    resolve: (_r, args, ctx) => links.revokeShareLink(ctx, String(args.id)),
  }),
  joinSession: t.field({
    type: SessionRef,
    description: "Joins a session with a share link's token, with the role the link grants.",
    args: { token: t.arg.string({ required: true, description: "ShareLink.token." }) },
    resolve: (_r, args, ctx) => sessions.joinSession(ctx, args.token),
  }),
  promote: t.field({
    type: SessionRef,
    description: "Makes the branch the session's main branch (owners only).",
    args: { branchId: t.arg.id({ required: true, description: "The branch to make main." }) },
    resolve: (_r, args, ctx) => branches.promote(ctx, String(args.branchId)),
  }),
}));

builder.subscriptionFields((t) => ({
  sessionEvents: t.field({
    type: SessionEventRef,
    description:
      "Snapshots added, heads moved, branches created/deleted, runs queued/started/finished, members changed.",
    args: {
      sessionId: t.arg.id({ required: true, description: "The session to follow." }),
      after: t.arg.string({ description: "A cursor from Session.eventCursor or an event." }),
    },
    subscribe: (_r, args, ctx) => sessions.sessionEvents(ctx, String(args.sessionId), args.after),
    resolve: (event) => event,
  }),
}));
