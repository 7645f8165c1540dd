import * as health from "../resolvers/health.ts";
import { builder } from "./builder.ts";

const HealthRef = builder.objectRef<health.Health>("Health").implement({
  fields: (t) => ({
    ok: t.exposeBoolean("ok"),
    version: t.exposeString("version"),
    runtime: t.exposeString("runtime"),
    provider: t.exposeString("provider", { description: "The default sandbox provider." }),
    isolation: t.exposeString("isolation", {
      description: 'How sandboxes are isolated: "bubblewrap" or "none".',
    }),
    workspaces: t.exposeString("workspaces", {
      description:
        'How live workspaces are made: "overlay" (fork and rollback are mounts) or "copy" (portable).',
    }),
    warnings: t.exposeStringList("warnings", {
      description: "What this server cannot enforce here, and why.",
    }),
    database: t.exposeBoolean("database", { description: "Whether the database answered." }),
  }),
});

builder.queryFields((t) => ({
  health: t.field({ type: HealthRef, resolve: (_root, _args, ctx) => health.health(ctx) }),
}));
