// HTTP to a live `opencode serve` through the unix socket its sandbox exposes. Dialing a unix socket
// is runtime-specific (Bun's fetch `unix:`, a Deno HttpClient), so it is handed in: the runtime port's
// `fetchUnix` (api/runtime). Every request carries the server's own Basic credentials, which never
// leave the platform.
import { type RawEvent, SseParser } from "./turn-events.ts";

/**
 * fetch over a unix socket (the URL's host is ignored). Bodies come back as sent, never decompressed:
 * the proxy forwards them unchanged.
 */
export type UnixFetch = (socketPath: string, url: string, init: RequestInit) => Promise<Response>;

export class OpencodeError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = "OpencodeError";
  }
}

export class OpencodeClient {
  private readonly authorization: string;

  constructor(
    readonly socketPath: string,
    password: string,
    private readonly dial: UnixFetch,
  ) {
    this.authorization = `Basic ${Buffer.from(`opencode:${password}`).toString("base64")}`;
  }

  /** A request as is (path with its query); the caller reads the response. */
  fetch(pathAndQuery: string, init: RequestInit = {}): Promise<Response> {
    const headers = new Headers(init.headers);
    headers.set("authorization", this.authorization);
    return this.dial(this.socketPath, `http://opencode${pathAndQuery}`, { ...init, headers });
  }

  /** JSON in, JSON out (null for 204); OpencodeError on a non-2xx answer. */
  async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const res = await this.fetch(path, {
      method,
      headers: {
        "accept-encoding": "identity",
        ...(body === undefined ? {} : { "content-type": "application/json" }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (!res.ok) throw new OpencodeError(res.status, `${method} ${path}: ${res.status} ${await res.text()}`);
    if (res.status === 204) return null as T;
    const text = await res.text();
    return (text ? JSON.parse(text) : null) as T;
  }

  /**
   * The instance's event stream (GET /event) until `signal` aborts or the server goes away. Resolves
   * `connected` once the server has acknowledged the subscription (its first event), so nothing sent
   * after that can be missed.
   */
  async *events(signal: AbortSignal, connected: () => void): AsyncGenerator<RawEvent> {
    const res = await this.fetch("/event", {
      headers: { accept: "text/event-stream", "accept-encoding": "identity" },
      signal,
    });
    if (!res.ok || !res.body) throw new OpencodeError(res.status, `GET /event: ${res.status}`);
    const parser = new SseParser();
    let first = true;
    for await (const chunk of res.body) {
      for (const data of parser.push(chunk)) {
        let event: RawEvent;
        try {
          event = JSON.parse(data) as RawEvent;
        } catch {
          continue;
        }
        if (first) {
          first = false;
          connected();
        }
        yield event;
      }
    }
  }
}
