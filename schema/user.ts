// Accounts: User, API keys, register/login, and the viewer's account events.
import type { ApiKeyRow, UserRow } from "../db/schema.ts";
import * as users from "../resolvers/user.ts";
import { builder } from "./builder.ts";

export const UserRef = builder.objectRef<UserRow>("User");
export const ApiKeyRef = builder.objectRef<ApiKeyRow>("ApiKey");

UserRef.implement({
  fields: (t) => ({
    id: t.exposeID("id"),
    email: t.exposeString("email"),
    name: t.exposeString("name", { nullable: true }),
    createdAt: t.expose("createdAt", { type: "DateTime" }),
    apiKeys: t.field({
      type: [ApiKeyRef],
      description: "Your API keys, newest first (empty for anyone else's account).",
      resolve: (user, _args, ctx) => users.listApiKeys(ctx, user.id),
    }),
  }),
});

ApiKeyRef.implement({
  description: "An API key. Its secret is shown once, by createApiKey; only its prefix is kept readable.",
  fields: (t) => ({
    id: t.exposeID("id"),
    name: t.exposeString("name"),
    prefix: t.exposeString("prefix", { description: "The first characters of the secret, to recognise it." }),
    scopes: t.exposeStringList("scopes"),
    createdAt: t.expose("createdAt", { type: "DateTime" }),
    lastUsedAt: t.field({
      type: "DateTime",
      nullable: true,
      description: "When the key last authenticated a request (to within a few seconds on this instance).",
      resolve: (key, _args, ctx) => {
        const pending = ctx.apiKeyLastUsed(key.id);
        return pending && (!key.lastUsedAt || pending > key.lastUsedAt) ? pending : key.lastUsedAt;
      },
    }),
    revokedAt: t.expose("revokedAt", { type: "DateTime", nullable: true }),
  }),
});

const AuthPayload = builder.objectRef<users.AuthResult>("AuthPayload").implement({
  fields: (t) => ({
    token: t.exposeString("token", { description: "Send as Authorization: Bearer <token>." }),
    expiresAt: t.expose("expiresAt", { type: "DateTime" }),
    user: t.field({ type: UserRef, resolve: (p) => p.user }),
  }),
});

const ApiKeyPayload = builder.objectRef<{ apiKey: ApiKeyRow; secret: string }>("ApiKeyPayload").implement({
  fields: (t) => ({
    apiKey: t.field({ type: ApiKeyRef, resolve: (p) => p.apiKey }),
    secret: t.exposeString("secret", { description: "Shown only in this response; store it now." }),
  }),
});

const SignOutPayload = builder.objectRef<users.SignOutResult>("SignOutPayload").implement({
  fields: (t) => ({
    signedOutAt: t.expose("signedOutAt", {
      type: "DateTime",
      description: "Access tokens issued before this moment are refused from now on.",
    }),
    token: t.exposeString("token", {
      nullable: true,
      description: "A fresh token for this client (null when you called with an API key).",
    }),
    expiresAt: t.expose("expiresAt", { type: "DateTime", nullable: true }),
  }),
});

const AccountEventKind = builder.enumType("AccountEventKind", {
  values: ["API_KEY_CREATED", "API_KEY_REVOKED"] as const,
});

const AccountEventRef = builder.objectRef<users.AccountEvent>("AccountEvent").implement({
  description: "A change to the viewer's account.",
  fields: (t) => ({
    kind: t.field({ type: AccountEventKind, resolve: (e) => e.kind }),
    apiKey: t.field({
      type: ApiKeyRef,
      nullable: true,
      resolve: (e, _args, ctx) => users.apiKeyById(ctx, e.apiKeyId),
    }),
  }),
});

builder.queryFields((t) => ({
  me: t.field({
    type: UserRef,
    nullable: true,
    description: "The signed-in user; null when anonymous.",
    resolve: (_root, _args, ctx) => users.me(ctx),
  }),
}));

builder.mutationFields((t) => ({
  register: t.field({
    type: AuthPayload,
    args: {
      email: t.arg.string({ required: true }),
      password: t.arg.string({ required: true, description: "At least 8 characters." }),
      name: t.arg.string(),
    },
    resolve: (_root, args, ctx) => users.register(ctx, args),
  }),
  login: t.field({
    type: AuthPayload,
    args: { email: t.arg.string({ required: true }), password: t.arg.string({ required: true }) },
    resolve: (_root, args, ctx) => users.login(ctx, args),
  }),
  createApiKey: t.field({
    type: ApiKeyPayload,
    description:
      'Creates an API key. Scopes: "read" (queries, subscriptions), "write" (mutations); default both.',
    args: { name: t.arg.string({ required: true }), scopes: t.arg.stringList() },
    resolve: (_root, args, ctx) => users.createApiKey(ctx, args),
  }),
  signOutEverywhere: t.field({
    type: SignOutPayload,
    description:
      "Ends every access token of your account issued until now: requests with them are refused, and sockets and subscriptions using them close (4401). API keys are not affected. Returns a fresh token for this client.",
    resolve: (_root, _args, ctx) => users.signOutEverywhere(ctx),
  }),
  revokeApiKey: t.field({
    type: ApiKeyRef,
    description: "Revokes a key at once: requests and open subscriptions using it are refused.",
    args: { id: t.arg.id({ required: true }) },
    resolve: (_root, args, ctx) => users.revokeApiKey(ctx, String(args.id)),
  }),
}));

builder.subscriptionFields((t) => ({
  accountEvents: t.field({
    type: AccountEventRef,
    description: "Your account's changes as they happen (API keys created or revoked).",
    subscribe: (_root, _args, ctx) => users.accountEvents(ctx),
    resolve: (event) => event.payload,
  }),
}));
