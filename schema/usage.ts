// Usage totals on sessions and on the signed-in user: runs, and storage against its quota; the
// limits that apply; what each snapshot costs to keep; why a run was stopped by a limit.
import type { UserRow } from "../db/schema.ts";
import type { QuotaLimits } from "../resolvers/quota.ts";
import * as usage from "../resolvers/usage.ts";
import { builder } from "./builder.ts";
import { RunRef, SessionRef, SnapshotRef } from "./refs.ts";
import { UserRef } from "./user.ts";

const UsageRef = builder.objectRef<usage.UsageTotals>("Usage").implement({
  description:
    "Summed over runs: wall and CPU time, model requests, tokens and cost; and the storage kept against its quota.",
  fields: (t) => ({
    runs: t.exposeInt("runs", { description: "Runs, of any kind." }),
    promptRuns: t.exposeInt("promptRuns", { description: "Agent turns among them." }),
    wallMs: t.exposeFloat("wallMs", { description: "Their wall time, summed." }),
    cpuMs: t.exposeFloat("cpuMs", { description: "Their CPU time, summed (where measurable)." }),
    modelRequests: t.exposeInt("modelRequests", { description: "Model calls through the gateway." }),
    inputTokens: t.exposeFloat("inputTokens", { description: "Tokens sent to models." }),
    outputTokens: t.exposeFloat("outputTokens", { description: "Tokens models answered with." }),
    costUsd: t.exposeFloat("costUsd", { description: "Agent cost in USD, as opencode computes it." }),
    storageBytes: t.float({
      description:
        "Bytes of snapshot content kept: the sum of every snapshot's addedBytes (a user's: over the sessions they own).",
      resolve: (u, _a, ctx) => usage.storageBytes(ctx, u.storageOf),
    }),
    storageLimitBytes: t.float({
      description: "The storage quota (a session's, or a user's over all the sessions they own).",
      resolve: (u, _a, ctx) => usage.storageLimitBytes(ctx, u.storageOf),
    }),
  }),
});

const QuotaLimitsRef = builder.objectRef<QuotaLimits>("QuotaLimits").implement({
  description:
    "Limits on what is stored. Past a storage quota, runs, writes, checkpoints and forks are refused with QUOTA_EXCEEDED until sessions are deleted.",
  fields: (t) => ({
    commandWriteBytes: t.float({
      description:
        "Bytes of files one command may write into its workspace; beyond, it is stopped and its writes discarded.",
      resolve: (l) => l.commandWriteBytes,
    }),
    sessionStorageBytes: t.float({
      description: "Storage quota per session.",
      resolve: (l) => l.sessionBytes,
    }),
    userStorageBytes: t.float({
      description: "Storage quota per user, over the sessions they own.",
      resolve: (l) => l.userBytes,
    }),
    sessions: t.int({ description: "Sessions a user may own.", resolve: (l) => l.userSessions }),
    branchesPerSession: t.int({
      description: "Branches a session may have.",
      resolve: (l) => l.branchesPerSession,
    }),
  }),
});

builder.objectField(SessionRef, "usage", (t) =>
  t.field({
    type: UsageRef,
    description: "What this session's runs used, and the storage it keeps.",
    resolve: (s, _a, ctx) => usage.sessionUsage(ctx, s.id),
  }),
);

builder.objectField(SessionRef, "storageBytes", (t) =>
  t.float({
    description: "Bytes of snapshot content this session keeps (counted against its and its owner's quotas).",
    resolve: (s, _a, ctx) => usage.sessionStorageBytes(ctx, s.id),
  }),
);

builder.objectField(SnapshotRef, "addedBytes", (t) =>
  t.float({
    description:
      "Bytes of file content this snapshot added over its parent: what keeping it costs (whole files: a changed file counts in full).",
    resolve: (s) => s.addedBytes,
  }),
);

builder.objectField(RunRef, "errorCode", (t) =>
  t.string({
    nullable: true,
    description:
      'QUOTA_EXCEEDED when a storage limit stopped the run (killedBy "disk": it wrote more than it may, and its writes were discarded; "quota": no room was left, or its snapshot took a quota over).',
    resolve: (r) => usage.runErrorCode(r),
  }),
);

builder.objectField(UserRef, "usage", (t) =>
  t.field({
    type: UsageRef,
    nullable: true,
    description: "Your runs across all sessions, and the storage you keep (null for anyone else).",
    resolve: (u: UserRow, _a, ctx) => (ctx.viewer?.userId === u.id ? usage.userUsage(ctx, u.id) : null),
  }),
);

builder.objectField(UserRef, "quota", (t) =>
  t.field({
    type: QuotaLimitsRef,
    nullable: true,
    description: "The limits that apply to you (null for anyone else).",
    resolve: (u: UserRow, _a, ctx) => (ctx.viewer?.userId === u.id ? usage.quotaLimits(ctx) : null),
  }),
);
