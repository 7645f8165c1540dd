// Accounts: User, API keys, register/login, and the viewer's account events.
import type { ApiKeyRow, UserRow } from "../db/schema.ts";
import * as users from "../resolvers/user.ts";
import { builder } from "./builder.ts";

export const UserRef = builder.objectRef<UserRow>("User");
export const ApiKeyRef = builder.objectRef<ApiKeyRow>("ApiKey");

builder.node(UserRef, {
  description: "An account: who signs in, owns sessions and runs commands.",
  id: { resolve: (user) => user.id },
  fields: (t) => ({
    email: t.exposeString("email", { description: "The address the account signs in with (lower-cased)." }),
    name: t.exposeString("name", { nullable: true, description: "The display name given at registration." }),
    createdAt: t.expose("createdAt", { type: "DateTime", description: "When the account was registered." }),
    apiKeys: t.field({
      type: [ApiKeyRef],
      description: "Your API keys, newest first (empty for anyone else's account).",
      resolve: (user, _args, ctx) => users.listApiKeys(ctx, user.id),
    }),
  }),
});

builder.node(ApiKeyRef, {
  description: "An API key. Its secret is shown once, by createApiKey; only its prefix is kept readable.",
  id: { resolve: (key) => key.id },
  fields: (t) => ({
    name: t.exposeString("name", { description: "The name given at creation, e.g. where the key is used." }),
    prefix: t.exposeString("prefix", { description: "The first characters of the secret, to recognise it." }),
    scopes: t.exposeStringList("scopes", {
      description: '"read" (queries, subscriptions) and/or "write" (mutations).',
    }),
    createdAt: t.expose("createdAt", { type: "DateTime", description: "When the key was created." }),
    lastUsedAt: t.field({
      type: "DateTime",
      nullable: true,
      description: "When the key last authenticated a request (to within a few seconds on this instance).",
      resolve: (key, _args, ctx) => {
        const pending = ctx.apiKeyLastUsed(key.id);
        return pending && (!key.lastUsedAt || pending > key.lastUsedAt) ? pending : key.lastUsedAt;
      },
    }),
    revokedAt: t.expose("revokedAt", {
      type: "DateTime",
      nullable: true,
      description: "When the key was revoked; null while it works.",
    }),
  }),
});

const AuthPayload = builder.objectRef<users.AuthResult>("AuthPayload").implement({
  description: "A signed-in account: its access token and who it is.",
  fields: (t) => ({
    token: t.exposeString("token", { description: "Send as Authorization: Bearer <token>." }),
    expiresAt: t.expose("expiresAt", { type: "DateTime", description: "When the token stops working." }),
    user: t.field({ type: UserRef, description: "The account signed in.", resolve: (p) => p.user }),
  }),
});

const ApiKeyPayload = builder.objectRef<{ apiKey: ApiKeyRow; secret: string }>("ApiKeyPayload").implement({
  description: "A new API key and, this once, its secret.",
  fields: (t) => ({
    apiKey: t.field({
      type: ApiKeyRef,
      description: "The key as it is listed from now on.",
      resolve: (p) => p.apiKey,
    }),
    secret: t.exposeString("secret", { description: "Shown only in this response; store it now." }),
  }),
});

const SignOutPayload = builder.objectRef<users.SignOutResult>("SignOutPayload").implement({
  description: "The result of signOutEverywhere.",
  fields: (t) => ({
    signedOutAt: t.expose("signedOutAt", {
      type: "DateTime",
      description: "Access tokens issued before this moment are refused from now on.",
    }),
    token: t.exposeString("token", {
      nullable: true,
      description: "A fresh token for this client (null when you called with an API key).",
    }),
    expiresAt: t.expose("expiresAt", {
      type: "DateTime",
      nullable: true,
      description: "When the fresh token stops working (null with no token).",
    }),
  }),
});

const AccountEventKind = builder.enumType("AccountEventKind", {
  description: "What changed in an account.",
  values: {
    API_KEY_CREATED: { description: "An API key was created." },
    API_KEY_REVOKED: { description: "An API key was revoked." },
  } as const,
});

const AccountEventRef = builder.objectRef<users.AccountEvent>("AccountEvent").implement({
  description: "A change to the viewer's account.",
  fields: (t) => ({
    kind: t.field({ type: AccountEventKind, description: "What changed.", resolve: (e) => e.kind }),
    apiKey: t.field({
      type: ApiKeyRef,
      nullable: true,
      description: "The key created or revoked (null if it no longer exists).",
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
    description: "Creates an account and signs it in.",
    args: {
      email: t.arg.string({ required: true, description: "The address to sign in with." }),
      password: t.arg.string({ required: true, description: "At least 8 characters." }),
      name: t.arg.string({ description: "A display name." }),
    },
    resolve: (_root, args, ctx) => users.register(ctx, args),
  }),
  login: t.field({
    type: AuthPayload,
    description: "Signs in with email and password; returns an access token.",
    args: {
      email: t.arg.string({ required: true, description: "The account's email." }),
      password: t.arg.string({ required: true, description: "The account's password." }),
    },
    resolve: (_root, args, ctx) => users.login(ctx, args),
  }),
  createApiKey: t.field({
    type: ApiKeyPayload,
    description:
      'Creates an API key. Scopes: "read" (queries, subscriptions), "write" (mutations); default both.',
    args: {
      name: t.arg.string({ required: true, description: "A name to recognise the key by." }),
      scopes: t.arg.stringList({ description: 'Any of "read", "write" (default both).' }),
    },
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
    args: { id: t.arg.id({ required: true, description: "The key's id (ApiKey.id)." }) },
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
