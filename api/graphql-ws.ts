// graphql-ws on top of yoga's envelop, so subscriptions share the HTTP path's plugins (limits, error
// masking, the access watch of live-access.ts) and context. Authentication comes from
// connectionParams; a socket closes (4401) when its credential is revoked, signed out everywhere or
// expires, so a dead credential is refused here as everywhere else. A bad operation (syntax,
// validation, depth/cost/alias limits) fails only itself; the socket and its other operations go on.
// Each operation of an authenticated socket counts against the same per-user and per-API-key request
// limits as an HTTP request (api/limits.ts, shared across instances): one over the limit fails alone
// with RATE_LIMITED and retryAfterSeconds, so switching transports or instances dodges nothing.
import { type DocumentNode, type ExecutionArgs, GraphQLError } from "graphql";
import { CloseCode, makeServer } from "graphql-ws";
import type { YogaServerInstance } from "graphql-yoga";
import type { Bus } from "../bus/bus.ts";
import type { Logger, Viewer } from "../resolvers/context.ts";
import { CredentialWatch } from "../resolvers/credential-watch.ts";
import { AppError } from "../resolvers/errors.ts";
import type { Authenticator } from "./auth/authenticate.ts";
import { normaliseGraphQLError } from "./errors.ts";
import type { RequestLimiter } from "./limits.ts";
import type { SocketHandler, SocketLike } from "./runtime/types.ts";

export const GRAPHQL_WS_PROTOCOL = "graphql-transport-ws";

/** What the HTTP/upgrade layer knows about a socket's peer. */
interface Extra {
  socket: TrackedSocket;
  clientAddress: string;
  viewer: Viewer | null;
}

interface TrackedSocket extends SocketLike {
  readonly closed: boolean;
}

// biome-ignore lint/suspicious/noExplicitAny: yoga's instance type is generic over server/user context.
type AnyYoga = YogaServerInstance<any, any>;

/** Reads "authorization" ("Bearer x") or "token" from connectionParams. */
function credentialFrom(params: Readonly<Record<string, unknown>> | undefined): string | undefined {
  const raw = params?.authorization ?? params?.Authorization ?? params?.token;
  if (typeof raw !== "string" || raw.trim() === "") return undefined;
  return raw.replace(/^Bearer\s+/i, "").trim();
}

export function createGraphQLWebSocket(deps: {
  yoga: AnyYoga;
  auth: Authenticator;
  bus: Bus;
  log: Logger;
  /** The request limits HTTP requests count against; each operation counts as one request. */
  limitRequests: RequestLimiter;
}) {
  const { yoga, auth, bus, log, limitRequests } = deps;
  /** Open sockets, and how to stop watching each one's credential. */
  const sockets = new Map<TrackedSocket, () => void>();
  const credentials = new CredentialWatch(bus, log);

  const server = makeServer<Record<string, unknown> | undefined, Extra>({
    async onConnect(ctx) {
      const credential = credentialFrom(ctx.connectionParams);
      if (credential === undefined) return true; // anonymous: public operations only
      try {
        const viewer = await auth.fromCredential(credential);
        ctx.extra.viewer = viewer;
        const { socket } = ctx.extra;
        if (socket.closed) return false;
        sockets.set(
          socket,
          credentials.watch(viewer, (error) => socket.close(4401, error.message.slice(0, 120))),
        );
        return true;
      } catch (error) {
        const message = error instanceof AppError ? error.message : "Authentication failed";
        ctx.extra.socket.close(4401, message.slice(0, 120));
        return false;
      }
    },
    async onSubscribe(ctx, id, payload) {
      const { viewer } = ctx.extra;
      if (viewer?.credential.kind === "token" && viewer.credential.expiresAt <= Date.now()) {
        ctx.extra.socket.close(4401, "Token expired: sign in again");
        return [
          new GraphQLError("Token expired: sign in again", { extensions: { code: "UNAUTHENTICATED" } }),
        ];
      }
      if (viewer) {
        const refused = await countOperation(viewer, ctx.extra.socket);
        if (refused) return [refused];
      }
      const enveloped = yoga.getEnveloped({
        viewer,
        clientAddress: ctx.extra.clientAddress,
        requestId: `ws:${id}`,
      });
      let document: DocumentNode;
      try {
        document = enveloped.parse(payload.query);
      } catch (error) {
        // A syntax error fails this operation only; thrown, graphql-ws would close the whole socket.
        if (error instanceof GraphQLError) return [normaliseGraphQLError(error)];
        throw error;
      }
      const args: ExecutionArgs = {
        schema: enveloped.schema,
        document,
        operationName: payload.operationName,
        variableValues: payload.variables,
        contextValue: await enveloped.contextFactory(),
        rootValue: { execute: enveloped.execute, subscribe: enveloped.subscribe },
      };
      let errors: readonly GraphQLError[];
      try {
        errors = enveloped.validate(args.schema, args.document);
      } catch (error) {
        // graphql-armor's rules (depth, cost, aliases, directives) throw their rejection: like a
        // syntax error it fails this operation only, instead of closing the socket with 4500.
        if (error instanceof GraphQLError) return [normaliseGraphQLError(error)];
        throw error;
      }
      if (errors.length > 0) return errors.map((e) => normaliseGraphQLError(e));
      return args;
    },
    execute: (args) => (args.rootValue as { execute: (a: ExecutionArgs) => unknown }).execute(args) as never,
    subscribe: (args) =>
      (args.rootValue as { subscribe: (a: ExecutionArgs) => unknown }).subscribe(args) as never,
  });

  /**
   * Counts the operation against the viewer's request limits; the error that fails it, if any. When
   * the check says a revocation from another instance just arrived, it has been applied by now: the
   * credential watch closed this socket if the revocation was of its credential.
   */
  async function countOperation(viewer: Viewer, socket: TrackedSocket): Promise<GraphQLError | null> {
    try {
      if (!(await limitRequests.check(viewer, limitRequests.before())) && socket.closed)
        return new GraphQLError("Credential revoked: sign in again", {
          extensions: { code: "UNAUTHENTICATED", reason: "revoked" },
        });
      return null;
    } catch (error) {
      // As over HTTP: { code: RATE_LIMITED, retryAfterSeconds } (no `http` extension on a socket).
      if (error instanceof AppError)
        return new GraphQLError(error.message, {
          extensions: { code: error.code, ...(error.details ?? {}) },
        });
      throw error;
    }
  }

  function forget(socket: TrackedSocket) {
    sockets.get(socket)?.();
    sockets.delete(socket);
  }

  return {
    /** The socket handler for one upgrade request. */
    handler(clientAddress: string): SocketHandler {
      let closed: ((code?: number, reason?: string) => Promise<void>) | undefined;
      let onMessage: ((data: string) => Promise<void>) | undefined;
      let tracked: TrackedSocket | undefined;
      return {
        protocol: GRAPHQL_WS_PROTOCOL,
        open(raw) {
          let isClosed = false;
          tracked = {
            get protocol() {
              return raw.protocol;
            },
            get closed() {
              return isClosed;
            },
            send: (data) => {
              if (!isClosed) raw.send(data);
            },
            close: (code, reason) => {
              if (isClosed) return;
              isClosed = true;
              raw.close(code, reason);
            },
          };
          sockets.set(tracked, () => {});
          closed = server.opened(
            {
              protocol: raw.protocol,
              send: (data) => tracked!.send(data),
              close: (code, reason) => tracked!.close(code, reason),
              onMessage: (cb) => {
                onMessage = cb;
              },
            },
            { socket: tracked, clientAddress, viewer: null },
          );
        },
        message(data) {
          const text = typeof data === "string" ? data : new TextDecoder().decode(data);
          onMessage?.(text).catch((error) => {
            log.warn("graphql-ws message failed", { error: String(error) });
            tracked?.close(CloseCode.InternalServerError, "Internal server error");
          });
        },
        close(code, reason) {
          if (tracked) forget(tracked);
          void closed?.(code, reason);
        },
      };
    },

    get openSockets(): number {
      return sockets.size;
    },

    /** Closes every socket (server shutdown) and stops watching revocations. */
    async close(code = 1001, reason = "Server shutting down") {
      for (const socket of [...sockets.keys()]) socket.close(code, reason);
      await credentials.close();
    },
  };
}
