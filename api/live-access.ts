// Envelop plugin: every subscription (graphql-ws and SSE alike) runs under an access watch
// (resolvers/access-watch.ts). The context gets `access` (requireRole records what it checks) and a
// bus whose subscriptions end with the operation; the result stream ends with a typed error once the
// viewer loses what it needs. Closing a graphql-ws socket for a dead credential is graphql-ws.ts's job.
import type { ExecutionResult } from "graphql";
import { isAsyncIterable, type Plugin } from "graphql-yoga";
import { AccessWatchHub, busUntil, untilAccessLost } from "../resolvers/access-watch.ts";
import type { Context, Services } from "../resolvers/context.ts";
import { appErrorToGraphQL } from "./errors.ts";

export function useLiveAccess(services: Pick<Services, "db" | "bus" | "log">): Plugin & {
  hub: AccessWatchHub;
} {
  const hub = new AccessWatchHub(services);
  return {
    hub,
    onSubscribe({ args, extendContext }) {
      const ctx = args.contextValue as unknown as Context;
      const live = hub.open(ctx.viewer ?? null, (sessionId) => ctx.loaders?.role.clear(sessionId));
      extendContext({ access: live, bus: busUntil(ctx.bus, live.signal) } as never);
      return {
        onSubscribeResult({ result, setResult }) {
          if (!isAsyncIterable(result)) return void live.end();
          const source = (result as AsyncIterable<ExecutionResult>)[Symbol.asyncIterator]();
          setResult(
            untilAccessLost<ExecutionResult>(source, live, (error) => ({
              errors: [appErrorToGraphQL(error)],
            })),
          );
        },
      };
    },
  };
}
