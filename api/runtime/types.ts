// The runtime port: everything the platform needs from Bun (now) or Deno (next).
// Cores take these types; only api/runtime/<name>.ts implements them.

/** A server-side WebSocket as the cores see it. */
export interface SocketLike {
  /** The negotiated subprotocol ("" when none). */
  readonly protocol: string;
  send(data: string | Uint8Array): void;
  close(code?: number, reason?: string): void;
  /**
   * Topics for fan-out, where the runtime has them (Bun): `publish` sends to every socket subscribed
   * to the topic except this one, in one call. Absent elsewhere; callers then loop over sockets.
   */
  subscribe?(topic: string): void;
  unsubscribe?(topic: string): void;
  publish?(topic: string, data: Uint8Array): void;
}

/** What a route hands the runtime when it accepts a WebSocket upgrade. */
export interface SocketHandler {
  /** Subprotocol to answer with (e.g. "graphql-transport-ws"). */
  protocol?: string;
  open(socket: SocketLike): void;
  message(data: string | Uint8Array): void;
  close(code: number, reason: string): void;
}

export interface ConnectionInfo {
  /** The peer's address, for rate limits and logs. */
  remoteAddress: string;
  /** Accepts the WebSocket upgrade of this request; false when it was not an upgrade request. */
  upgrade(handler: SocketHandler): boolean;
}

/** The app's request handler; `undefined` means the request was upgraded to a WebSocket. */
export type AppFetch = (request: Request, connection: ConnectionInfo) => Promise<Response | undefined>;

export interface ServeOptions {
  hostname: string;
  port: number;
  fetch: AppFetch;
  /** Transport-level cap on request bodies (the app checks its own, tighter limit too). */
  maxRequestBodySize: number;
  /** Largest incoming WebSocket message; a larger one closes its socket (1009). Default 16 MiB. */
  maxSocketMessageBytes?: number;
}

export interface RunningServer {
  readonly hostname: string;
  readonly port: number;
  /** Stops accepting connections; resolves when in-flight requests are done (or at once with force). */
  stop(force?: boolean): Promise<void>;
}

export interface PasswordHasher {
  hash(password: string): Promise<string>;
  verify(password: string, hash: string): Promise<boolean>;
}

export interface Runtime {
  readonly name: string;
  serve(options: ServeOptions): RunningServer;
  password: PasswordHasher;
  /**
   * fetch over a unix socket (live agents' opencode servers; the URL's host is ignored). Response
   * bodies come back as sent, never decompressed (the agent proxy forwards them).
   */
  fetchUnix(socketPath: string, url: string, init: RequestInit): Promise<Response>;
  /** Registers a handler for SIGTERM/SIGINT; returns an unregister function. */
  onShutdownSignal(handler: (signal: string) => void): () => void;
}
