// Per-user model endpoints: a user may bring their own OpenAI-compatible endpoint and key. The key is
// sealed at rest, shown only as a hint, and used only by the gateway for that user's agent runs.
// The endpoint is user input: it must pass the outbound policy here and again at every request
// (the gateway re-checks; DNS can change in between).
import { eq } from "drizzle-orm";
import type { Upstream } from "../agent/gateway.ts";
import { type UserModelKeyRow, userModelKeys } from "../db/schema.ts";
import { OutboundRefusedError } from "../sandbox/outbound-policy.ts";
import { type Context, requireScope, requireViewer } from "./context.ts";
import { AppError, badInput } from "./errors.ts";

export async function setModelKey(
  ctx: Context,
  input: { baseURL: string; apiKey: string; model: string },
): Promise<UserModelKeyRow> {
  const viewer = requireScope(ctx, "write");
  if (!input.apiKey.trim() || input.apiKey.length > 1000)
    throw badInput("apiKey must be 1 to 1000 characters", "apiKey");
  if (!input.model.trim() || input.model.length > 200)
    throw badInput("model must be 1 to 200 characters", "model");
  if (input.baseURL.length > 2000) throw badInput("baseURL must be at most 2000 characters", "baseURL");
  const url = await checkEndpoint(ctx, input.baseURL);
  const row = {
    userId: viewer.userId,
    // Normalised: what was checked is what the gateway will parse (no parser differentials).
    baseURL: url.href,
    model: input.model.trim(),
    sealedKey: ctx.secrets.seal(input.apiKey),
    keyHint: `…${input.apiKey.slice(-4)}`,
    updatedAt: new Date(),
  };
  const [saved] = await ctx.db
    .insert(userModelKeys)
    .values(row)
    .onConflictDoUpdate({ target: userModelKeys.userId, set: row })
    .returning();
  return saved!;
}

/** BAD_USER_INPUT with `reason` (INVALID_URL, UNSUPPORTED_SCHEME, NOT_PUBLIC) unless allowed. */
async function checkEndpoint(ctx: Context, baseURL: string): Promise<URL> {
  try {
    return (await ctx.outbound.resolve(baseURL, ["https", "http"])).url;
  } catch (error) {
    if (!(error instanceof OutboundRefusedError)) throw error;
    const message =
      error.reason === "INVALID_URL"
        ? "baseURL must be a URL such as https://api.openai.com/v1"
        : error.reason === "UNSUPPORTED_SCHEME"
          ? "baseURL must be http(s)"
          : `baseURL ${error.message}`;
    throw new AppError("BAD_USER_INPUT", message, { field: "baseURL", reason: error.reason });
  }
}

export async function deleteModelKey(ctx: Context): Promise<boolean> {
  const viewer = requireScope(ctx, "write");
  const deleted = await ctx.db
    .delete(userModelKeys)
    .where(eq(userModelKeys.userId, viewer.userId))
    .returning();
  return deleted.length > 0;
}

export async function myModelKey(ctx: Context, userId: string): Promise<UserModelKeyRow | null> {
  if (requireViewer(ctx).userId !== userId) return null;
  const [row] = await ctx.db.select().from(userModelKeys).where(eq(userModelKeys.userId, userId));
  return row ?? null;
}

/** The model a user's agent runs use: their own if set, else the platform's; UNAVAILABLE if neither. */
export async function modelFor(ctx: Context, userId: string): Promise<Upstream> {
  const [own] = await ctx.db.select().from(userModelKeys).where(eq(userModelKeys.userId, userId));
  if (own) return { baseURL: own.baseURL, apiKey: ctx.secrets.open(own.sealedKey), model: own.model };
  if (ctx.platformModel) return ctx.platformModel;
  throw new AppError(
    "UNAVAILABLE",
    "No model is configured: set AGENT_MODEL_BASE_URL (+ AGENT_MODEL_API_KEY, AGENT_MODEL), OPENAI_API_KEY or ANTHROPIC_API_KEY on the server, or call setModelKey",
  );
}
