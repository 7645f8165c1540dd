// The Deno twin of the runtime port: Deno.serve with Deno.upgradeWebSocket, and argon2id password
// hashes in the same PHC format Bun.password writes (accounts move between runtimes both ways).
import { hash as argon2Hash, verify as argon2Verify } from "@node-rs/argon2";
import type { RunningServer, Runtime, ServeOptions, SocketHandler, SocketLike } from "./types.ts";

// The few Deno APIs used here, typed locally: the rest of the code base is type-checked against
// bun-types and must not see a `Deno` global it could call outside this adapter.
interface DenoServeInfo {
  remoteAddr: { hostname?: string };
}
interface DenoHttpServer {
  addr: { hostname: string; port: number };
  finished: Promise<void>;
  shutdown(): Promise<void>;
}
interface DenoHttpClient {
  close(): void;
}
interface DenoNamespace {
  version: { deno: string };
  serve(
    options: {
      hostname: string;
      port: number;
      onListen?: (addr: { hostname: string; port: number }) => void;
      onError?: (error: unknown) => Response;
    },
    handler: (request: Request, info: DenoServeInfo) => Response | Promise<Response>,
  ): DenoHttpServer;
  upgradeWebSocket(
    request: Request,
    options?: { protocol?: string; idleTimeout?: number },
  ): { socket: WebSocket; response: Response };
  createHttpClient(options: { proxy: { transport: "unix"; path: string } }): DenoHttpClient;
  addSignalListener(signal: "SIGTERM" | "SIGINT", handler: () => void): void;
  removeSignalListener(signal: "SIGTERM" | "SIGINT", handler: () => void): void;
}

const Deno = (globalThis as unknown as { Deno: DenoNamespace }).Deno;

/** What one socket may have queued unsent before it is dropped (Bun's backpressure limit, 16 MiB). */
const MAX_BUFFERED_BYTES = 16 * 1024 * 1024;

/** Argon2id at Bun.password's defaults (64 MiB, 2 passes, 1 lane): hashes look the same on both runtimes. */
// `algorithm: 2` is the package's const enum Algorithm.Argon2id (not importable under verbatimModuleSyntax).
const ARGON2ID = { algorithm: 2 as const, memoryCost: 65536, timeCost: 2, parallelism: 1 };

function adapt(socket: WebSocket, handler: SocketHandler): SocketLike {
  return {
    // Deno reports "" for the server socket's subprotocol even after answering with one (the trap of
    // graphql-ws#587, whose use/deno then closes with 4406): report what we answered with, as Bun does.
    get protocol() {
      return handler.protocol ?? "";
    },
    send(data) {
      if (socket.readyState !== WebSocket.OPEN) return;
      // A client too slow to take what it is sent is dropped (it resyncs when it reconnects) rather
      // than buffered without bound; Bun does the same with closeOnBackpressureLimit.
      if (socket.bufferedAmount > MAX_BUFFERED_BYTES) {
        socket.close(1008, "Too slow to receive");
        return;
      }
      socket.send(data as string | Uint8Array<ArrayBuffer>);
    },
    close(code, reason) {
      if (socket.readyState === WebSocket.CLOSING || socket.readyState === WebSocket.CLOSED) return;
      socket.close(code, reason);
    },
    // No topics on Deno: callers fan out by looping over their sockets.
  };
}

function serve(options: ServeOptions): RunningServer {
  // options.maxRequestBodySize has no Deno.serve counterpart: the app's own, tighter limit applies
  // (it refuses on Content-Length at once and stops reading a chunked body at its limit). Incoming
  // WebSocket messages are capped below, once Deno has read them (Deno has no per-socket option).
  const maxMessage = options.maxSocketMessageBytes ?? 16 * 1024 * 1024;
  const sockets = new Set<WebSocket>();

  function upgrade(request: Request, handler: SocketHandler): Response | undefined {
    if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") return undefined;
    let upgraded: { socket: WebSocket; response: Response };
    try {
      // idleTimeout is in seconds here: Deno pings an idle socket and closes it without a pong.
      upgraded = Deno.upgradeWebSocket(request, { protocol: handler.protocol, idleTimeout: 120 });
    } catch {
      return undefined;
    }
    const { socket } = upgraded;
    socket.binaryType = "arraybuffer";
    sockets.add(socket);
    const adapted = adapt(socket, handler);
    socket.onopen = () => handler.open(adapted);
    socket.onmessage = (event: MessageEvent) => {
      const data = event.data;
      const size =
        typeof data !== "string"
          ? (data as ArrayBuffer).byteLength
          : // UTF-8 takes at most 3 bytes per UTF-16 unit: only a long text is measured exactly.
            data.length * 3 <= maxMessage
            ? data.length
            : new TextEncoder().encode(data).byteLength;
      // Deno has no per-socket message cap: apply the app's (Bun closes with 1009 the same way).
      if (size > maxMessage) {
        adapted.close(1009, "Message too big");
        return;
      }
      handler.message(typeof data === "string" ? data : new Uint8Array(data as ArrayBuffer));
    };
    socket.onclose = (event: CloseEvent) => {
      sockets.delete(socket);
      handler.close(event.code, event.reason);
    };
    socket.onerror = () => {};
    return upgraded.response;
  }

  let listening: { hostname: string; port: number } = { hostname: options.hostname, port: options.port };
  const server = Deno.serve(
    {
      hostname: options.hostname,
      port: options.port,
      onListen: (addr) => {
        listening = addr;
      },
    },
    async (request, info) => {
      // Everything the app needs from the request (headers included) is read inside its fetch,
      // before the upgrade response goes out: Deno refuses to read a request after that.
      let upgradeResponse: Response | undefined;
      const response = await options.fetch(request, {
        remoteAddress: info.remoteAddr.hostname ?? "unknown",
        upgrade(handler) {
          upgradeResponse = upgrade(request, handler);
          return upgradeResponse !== undefined;
        },
      });
      return response ?? upgradeResponse ?? new Response(null, { status: 500 });
    },
  );
  listening = server.addr ?? listening;
  let shutdown: Promise<void> | undefined;

  return {
    hostname: listening.hostname,
    port: listening.port,
    async stop(force = false) {
      // One shutdown for both calls (start.ts stops gently, then forcefully).
      shutdown ??= server.shutdown();
      const finished = shutdown;
      if (!force) return finished;
      // Forced: close every WebSocket still open (Bun's stop(true) does the same) and do not wait
      // long for streamed responses to end.
      for (const socket of sockets) {
        try {
          socket.close(1001, "Server is shutting down");
        } catch {}
      }
      await Promise.race([finished, new Promise((resolve) => setTimeout(resolve, 1000))]);
    },
  };
}

/** Live agents' sockets in use lately; the oldest client is closed past this many. */
const MAX_UNIX_CLIENTS = 64;
const unixClients = new Map<string, DenoHttpClient>();

/**
 * fetch through a Deno HttpClient whose transport is the unix socket (Deno sends the request line in
 * absolute form, which opencode's Bun server takes). Deno has no `decompress: false`: it decompresses
 * a gzip answer to any accept-encoding but `identity` and keeps the content-encoding header, which a
 * proxy would forward wrongly. Asking for `identity` leaves the body as sent (measured on 2.9.6).
 */
function fetchUnix(socketPath: string, url: string, init: RequestInit): Promise<Response> {
  let client = unixClients.get(socketPath);
  if (client) unixClients.delete(socketPath);
  else client = Deno.createHttpClient({ proxy: { transport: "unix", path: socketPath } });
  unixClients.set(socketPath, client); // most recently used last
  if (unixClients.size > MAX_UNIX_CLIENTS) {
    const [oldest, stale] = unixClients.entries().next().value!;
    unixClients.delete(oldest);
    stale.close();
  }
  const headers = new Headers(init.headers);
  headers.set("accept-encoding", "identity");
  return fetch(url, { ...init, headers, client } as RequestInit);
}

export const denoRuntime: Runtime = {
  name: `deno ${Deno?.version?.deno ?? "?"}`,
  serve,
  password: {
    hash: (password) => argon2Hash(password, ARGON2ID),
    // A malformed stored hash is a failed login, never a crash.
    verify: (password, hash) => argon2Verify(hash, password).catch(() => false),
  },
  fetchUnix,
  onShutdownSignal(handler) {
    const onTerm = () => handler("SIGTERM");
    const onInt = () => handler("SIGINT");
    Deno.addSignalListener("SIGTERM", onTerm);
    Deno.addSignalListener("SIGINT", onInt);
    return () => {
      Deno.removeSignalListener("SIGTERM", onTerm);
      Deno.removeSignalListener("SIGINT", onInt);
    };
  },
};
