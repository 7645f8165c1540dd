// Builds the per-request context, for HTTP and WebSocket alike.
import type { Context, Services, Viewer } from "../resolvers/context.ts";
import { createLoaders } from "../resolvers/loaders.ts";

interface RequestFacts {
  requestId?: string;
  viewer: Viewer | null;
  clientAddress: string;
}

export function createContext(services: Services, request: RequestFacts): Context {
  return { ...services, ...ownFields(services, request) };
}

/**
 * The same context with the services inherited rather than copied: its own properties are only the
 * request's. Handed to yoga as the server context, which yoga copies property by property (and again
 * into each operation's context), so a couple dozen copied service keys per request were a measurable
 * share of the HTTP hot path. Reads (ctx.db, ctx.bus, ...) see the services through the prototype.
 */
export function createInheritingContext(services: Services, request: RequestFacts): Context {
  return Object.assign(Object.create(services) as Context, ownFields(services, request));
}

function ownFields(services: Services, request: RequestFacts) {
  return {
    requestId: request.requestId ?? crypto.randomUUID(),
    viewer: request.viewer,
    clientAddress: request.clientAddress,
    // Lazy: each loader is built on first use, and the viewer's row is primed into `user` then.
    loaders: createLoaders(services.db, request.viewer?.userId ?? null, request.viewer?.user ?? null),
  };
}
