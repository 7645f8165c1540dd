// Builds the per-request context, for HTTP and WebSocket alike.
import type { Context, Services, Viewer } from "../resolvers/context.ts";
import { createLoaders } from "../resolvers/loaders.ts";

export function createContext(
  services: Services,
  request: { requestId?: string; viewer: Viewer | null; clientAddress: string },
): Context {
  const loaders = createLoaders(services.db, request.viewer?.userId ?? null);
  if (request.viewer?.user) loaders.user.prime(request.viewer.userId, request.viewer.user);
  return {
    ...services,
    requestId: request.requestId ?? crypto.randomUUID(),
    viewer: request.viewer,
    clientAddress: request.clientAddress,
    loaders,
  };
}
