// Health: what this server runs on and whether its database answers (GET /healthz and `health`).
import type { ProviderStatus } from "../sandbox/provider.ts";
import type { Context, HealthInfo } from "./context.ts";

export interface Health
  extends Omit<HealthInfo, "checkDatabase" | "checkSharedStore" | "providers" | "sharedStore"> {
  ok: boolean;
  providers: (ProviderStatus & { default: boolean })[];
  database: boolean;
  /**
   * Redis/Upstash (with several instances): whether it answers. Not part of `ok`: while it is down an
   * instance still serves requests (events and shared limits wait for it), and a load balancer that
   * took every instance out over it would turn a degraded platform into a stopped one.
   */
  sharedStore: { kind: HealthInfo["sharedStore"]; ok: boolean };
}

export async function health(ctx: Pick<Context, "health">): Promise<Health> {
  const [database, shared] = await Promise.all([
    ctx.health.checkDatabase().catch(() => false),
    ctx.health.checkSharedStore().catch(() => false),
  ]);
  const { checkDatabase: _, checkSharedStore: __, sharedStore, providers, ...info } = ctx.health;
  return {
    ...info,
    ok: database,
    providers: providers.map((p) => ({ ...p, default: p.name === info.provider })),
    database,
    sharedStore: { kind: sharedStore, ok: shared },
  };
}
