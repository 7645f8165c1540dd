// Usage totals on sessions and on the signed-in user.
import type { UserRow } from "../db/schema.ts";
import * as usage from "../resolvers/usage.ts";
import { builder } from "./builder.ts";
import { SessionRef } from "./refs.ts";
import { UserRef } from "./user.ts";

const UsageRef = builder.objectRef<usage.UsageTotals>("Usage").implement({
  description: "Summed over runs: wall and CPU time, model requests, tokens and cost.",
  fields: (t) => ({
    runs: t.exposeInt("runs"),
    promptRuns: t.exposeInt("promptRuns"),
    wallMs: t.exposeFloat("wallMs"),
    cpuMs: t.exposeFloat("cpuMs"),
    modelRequests: t.exposeInt("modelRequests"),
    inputTokens: t.exposeFloat("inputTokens"),
    outputTokens: t.exposeFloat("outputTokens"),
    costUsd: t.exposeFloat("costUsd"),
  }),
});

builder.objectField(SessionRef, "usage", (t) =>
  t.field({ type: UsageRef, resolve: (s, _a, ctx) => usage.sessionUsage(ctx, s.id) }),
);

builder.objectField(UserRef, "usage", (t) =>
  t.field({
    type: UsageRef,
    nullable: true,
    description: "Your runs across all sessions (null for anyone else).",
    resolve: (u: UserRow, _a, ctx) => (ctx.viewer?.userId === u.id ? usage.userUsage(ctx, u.id) : null),
  }),
);
