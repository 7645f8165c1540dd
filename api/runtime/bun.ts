// The Bun twin of the runtime port: Bun.serve with WebSocket upgrades, and Bun.password (argon2id).
import type { Server, ServerWebSocket } from "bun";
import type { RunningServer, Runtime, ServeOptions, SocketHandler, SocketLike } from "./types.ts";

interface SocketData {
  handler: SocketHandler;
}

function adapt(ws: ServerWebSocket<SocketData>): SocketLike {
  return {
    get protocol() {
      return ws.data.handler.protocol ?? "";
    },
    send: (data) => {
      ws.send(data);
    },
    close: (code, reason) => ws.close(code, reason),
    subscribe: (topic) => ws.subscribe(topic),
    unsubscribe: (topic) => ws.unsubscribe(topic),
    publish: (topic, data) => {
      ws.publish(topic, data);
    },
  };
}

function serve(options: ServeOptions): RunningServer {
  const server: Server<SocketData> = Bun.serve<SocketData>({
    hostname: options.hostname,
    port: options.port,
    maxRequestBodySize: options.maxRequestBodySize,
    // Long-running subscriptions and streamed responses must not be cut by Bun's 10 s idle default.
    idleTimeout: 0,
    fetch(request, srv) {
      return options.fetch(request, {
        remoteAddress: srv.requestIP(request)?.address ?? "unknown",
        upgrade(handler) {
          const headers = handler.protocol ? { "Sec-WebSocket-Protocol": handler.protocol } : undefined;
          return srv.upgrade(request, { data: { handler }, headers });
        },
      });
    },
    websocket: {
      // Bun pings idle sockets itself; keep connections open while subscriptions are quiet.
      idleTimeout: 120,
      sendPings: true,
      // A client too slow to take what it is sent is dropped (it resyncs when it reconnects) rather
      // than silently missing messages. No incoming message may exceed what the app can take (Bun
      // closes the socket with 1009 before buffering more).
      closeOnBackpressureLimit: true,
      maxPayloadLength: options.maxSocketMessageBytes ?? 16 * 1024 * 1024,
      open(ws) {
        ws.data.handler.open(adapt(ws));
      },
      message(ws, message) {
        ws.data.handler.message(typeof message === "string" ? message : new Uint8Array(message));
      },
      close(ws, code, reason) {
        ws.data.handler.close(code, reason);
      },
    },
  });
  return {
    hostname: server.hostname ?? options.hostname,
    port: server.port ?? options.port,
    stop: (force = false) => server.stop(force),
  };
}

export const bunRuntime: Runtime = {
  name: `bun ${Bun.version}`,
  serve,
  password: {
    hash: (password) => Bun.password.hash(password, { algorithm: "argon2id" }),
    verify: (password, hash) => Bun.password.verify(password, hash),
  },
  // Bun's fetch dials unix sockets itself; `decompress: false` passes bodies on unchanged.
  fetchUnix: (socketPath, url, init) =>
    fetch(url, { ...init, unix: socketPath, decompress: false } as RequestInit),
  onShutdownSignal(handler) {
    const onTerm = () => handler("SIGTERM");
    const onInt = () => handler("SIGINT");
    process.on("SIGTERM", onTerm);
    process.on("SIGINT", onInt);
    return () => {
      process.off("SIGTERM", onTerm);
      process.off("SIGINT", onInt);
    };
  },
};
