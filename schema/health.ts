import * as health from "../resolvers/health.ts";
import { builder } from "./builder.ts";

const ProviderHealthRef = builder
  .objectRef<health.Health["providers"][number]>("SandboxProviderStatus")
  .implement({
    description: "A sandbox provider this server offers; createSession(input: {provider}) picks one.",
    fields: (t) => ({
      name: t.exposeString("name", { description: '"local" or "contree".' }),
      default: t.exposeBoolean("default", {
        description: "Whether new sessions get it when they name none.",
      }),
      isolation: t.exposeString("isolation", {
        description: '"bubblewrap", "none" (local) or "microvm" (contree).',
      }),
      workspaces: t.exposeString("workspaces", {
        description: '"overlay" or "copy" (local), "images" (contree: every snapshot is an image).',
      }),
      agentMode: t.exposeString("agentMode", {
        description:
          '"live": a kept-alive `opencode serve` per branch in use, which `opencode attach` can reach through Branch.agentUrl (local); "per-turn": one `opencode run` per turn (contree: a microVM cannot be reached from outside).',
      }),
      warnings: t.exposeStringList("warnings", {
        description: "What this provider cannot do here, and why.",
      }),
    }),
  });

const HealthRef = builder.objectRef<health.Health>("Health").implement({
  description: "The server's state and what it can enforce.",
  fields: (t) => ({
    ok: t.exposeBoolean("ok", { description: "Whether the server can serve: its database answered." }),
    version: t.exposeString("version", { description: "The server's version." }),
    runtime: t.exposeString("runtime", { description: 'The JavaScript runtime: "bun" or "deno".' }),
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
    providers: t.field({
      type: [ProviderHealthRef],
      description: "The sandbox providers this server offers.",
      resolve: (h) => h.providers,
    }),
  }),
});

builder.queryFields((t) => ({
  health: t.field({
    type: HealthRef,
    description: "Whether the server works, and how (no sign-in needed).",
    resolve: (_root, _args, ctx) => health.health(ctx),
  }),
}));
