// Presence: who is in a session and where, live.
import type { PresenceEntry, PresenceEvent } from "../resolvers/context.ts";
import * as presence from "../resolvers/presence.ts";
import { cursorProblem } from "../resolvers/presence-input.ts";
import { builder } from "./builder.ts";
import { SessionRef } from "./refs.ts";
import { UserRef } from "./user.ts";

const PresenceEntryRef = builder.objectRef<PresenceEntry>("PresenceEntry").implement({
  description:
    "Someone in the session: a collaboration client (per room and tab) or an announcing GraphQL client.",
  fields: (t) => ({
    key: t.exposeString("key", { description: "Identifies this client's entry (stable while it stays)." }),
    user: t.field({
      type: UserRef,
      nullable: true,
      description:
        "Who this is: the account the client signed in with (never taken from what it announces); null for a share-link guest.",
      resolve: (p, _a, ctx) => (p.userId ? ctx.loaders.user.load(p.userId) : null),
    }),
    name: t.exposeString("name", {
      description: "The display name the client chose (a label; `user` says who it really is).",
    }),
    color: t.exposeString("color", {
      nullable: true,
      description: "The client's color: #rgb, #rrggbb or a CSS name.",
    }),
    branchId: t.exposeID("branchId", { nullable: true, description: "The branch it is on, if it said." }),
    file: t.exposeString("file", { nullable: true, description: "The file it has open, if it said." }),
    // Checked when announced; checked again here so nothing stored can make this query fail.
    cursor: t.field({
      type: "JSON",
      nullable: true,
      description: "Where it is in the file: whatever JSON the client announced (at most 2 kB).",
      resolve: (p) => (cursorProblem(p.cursor) ? null : (p.cursor ?? null)),
    }),
    since: t.field({ type: "DateTime", description: "When it arrived.", resolve: (p) => new Date(p.since) }),
    updatedAt: t.field({
      type: "DateTime",
      description: "When it last announced itself.",
      resolve: (p) => new Date(p.updatedAt),
    }),
  }),
});

const PresenceKind = builder.enumType("PresenceKind", {
  description: "What a presence change is.",
  values: {
    JOIN: { description: "Someone arrived." },
    UPDATE: { description: "Someone moved (branch, file, cursor) or renamed." },
    LEAVE: { description: "Someone left (or stopped announcing)." },
  } as const,
});

const PresenceEventRef = builder.objectRef<PresenceEvent>("PresenceEvent").implement({
  description: "Someone arrived, moved or left.",
  fields: (t) => ({
    kind: t.field({ type: PresenceKind, description: "What changed.", resolve: (e) => e.kind }),
    entry: t.field({ type: PresenceEntryRef, description: "Who, as they are now.", resolve: (e) => e.entry }),
  }),
});

builder.objectField(SessionRef, "presence", (t) =>
  t.field({
    type: [PresenceEntryRef],
    description: "Who is here now.",
    resolve: (s, _a, ctx) => presence.sessionPresence(ctx, s.id),
  }),
);

builder.mutationFields((t) => ({
  announcePresence: t.field({
    type: PresenceEntryRef,
    description:
      "For GraphQL-only clients: I am here (and where). Repeat within 30 s to stay present. Needs the write scope; the cursor is a JSON object or array of at most 2 kB, 6 levels deep.",
    args: {
      sessionId: t.arg.id({ required: true, description: "The session you are in." }),
      branchId: t.arg.id({ description: "The branch you are on (one of the session's)." }),
      file: t.arg.string({ description: "The file you have open." }),
      cursor: t.arg({
        type: "JSON",
        description: "Where you are in it: a JSON object or array (2 kB, 6 levels at most).",
      }),
      color: t.arg.string({ description: "Your color: #rgb, #rrggbb or a CSS color name." }),
    },
    resolve: (_r, args, ctx) =>
      presence.announcePresence(ctx, {
        ...args,
        sessionId: String(args.sessionId),
        branchId: args.branchId ? String(args.branchId) : null,
      }),
  }),
}));

builder.subscriptionFields((t) => ({
  presence: t.field({
    type: PresenceEventRef,
    description: "Joins, updates (where, cursor) and leaves of everyone in the session, live.",
    args: { sessionId: t.arg.id({ required: true, description: "The session to watch." }) },
    subscribe: (_r, args, ctx) => presence.presenceEvents(ctx, String(args.sessionId)),
    resolve: (e) => e,
  }),
}));
