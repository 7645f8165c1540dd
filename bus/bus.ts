// Cross-instance publish/subscribe. Every event carries a monotonic id per topic so a subscriber can
// resume after the last id it saw (plain pub/sub is at-most-once; resumption closes that gap).
// Implementations: memory.ts (one process, the default), redis.ts (REDIS_URL) and upstash.ts (Upstash's
// REST API), the last two over Redis Streams (stream-bus.ts). Retention is bounded: resuming after an
// event the bus no longer holds fails with CursorExpiredError rather than silently skipping events.

export interface BusEvent<T = unknown> {
  /**
   * Monotonic within the topic, time-based: milliseconds since the epoch × 1000 + a sequence number
   * below 1000 (a Redis stream id "ms-seq" maps to ms × 1000 + seq). Exposed to clients as strings.
   */
  id: number;
  topic: string;
  payload: T;
}

export interface SubscribeOptions {
  /**
   * Deliver retained events with an id greater than this first, then live ones. 0 means "whatever is
   * retained"; any other cursor whose following events are no longer all retained fails the
   * subscription with CursorExpiredError.
   */
  after?: number;
  signal?: AbortSignal;
}

export interface Bus {
  publish<T>(topic: string, payload: T): Promise<BusEvent<T>>;
  subscribe<T>(topic: string, options?: SubscribeOptions): AsyncIterableIterator<BusEvent<T>>;
  /** A cursor to resume after: the topic's latest event id, or "now" when it has none. */
  lastId(topic: string): Promise<number>;
  /**
   * Shared buses: waits (at most `timeoutMs`) until this process has delivered the topic's events up
   * to `id` to its subscribers; true if it had to wait. Only for topics this process subscribes to.
   */
  waitFor?(topic: string, id: number, timeoutMs: number): Promise<boolean>;
  /** Shared buses: the id up to which this process has delivered the topic (if it tails it). */
  position?(topic: string): number | undefined;
  close(): Promise<void>;
}

/** A resume cursor older than what the bus retains: events after it may be lost, so none are delivered. */
export class CursorExpiredError extends Error {
  constructor(
    readonly topic: string,
    readonly after: number,
  ) {
    super("The cursor is older than the events the server retains: read a fresh cursor and reload");
    this.name = "CursorExpiredError";
  }
}

/**
 * The payloads of a topic as an async generator (what a GraphQL subscription resolver returns),
 * ending after the payload `last` accepts; unsubscribes when the consumer stops.
 */
export async function* payloadsOf<T>(
  bus: Bus,
  topic: string,
  options: SubscribeOptions & { last?: (payload: T) => boolean } = {},
): AsyncGenerator<T> {
  const events = bus.subscribe<T>(topic, options);
  try {
    for await (const { payload } of events) {
      yield payload;
      if (options.last?.(payload)) return;
    }
  } finally {
    await events.return?.();
  }
}

/** Topic names in one place, so publishers and subscribers cannot drift apart. */
export const topics = {
  /** Account changes of one user (API keys created/revoked). */
  user: (userId: string) => `user:${userId}`,
  /** Credentials revoked anywhere: sockets authenticated by them close. */
  revokedCredentials: "auth:revoked",
  /** Everything that changes a session's tree, branches or runs. */
  session: (sessionId: string) => `session:${sessionId}`,
  /** One run's output chunks and its end. */
  run: (runId: string) => `run:${runId}`,
  /** A user lost access to a session (removed member): their open sockets close. */
  accessRevoked: "auth:access-revoked",
  /** A share link was revoked: sockets and streams opened with it end. Payload { sessionId, linkId }. */
  shareLinkRevoked: "auth:share-link-revoked",
  /**
   * A user ended all their sessions' tokens ("sign out everywhere"), or was deleted: JWTs issued
   * before `before` (ms since epoch) stop working. Payload { userId, before }.
   */
  tokensRevoked: "auth:tokens-revoked",
  /** Who is in a session: join/update/leave. */
  presence: (sessionId: string) => `presence:${sessionId}`,
  /** Progress of one exploration. */
  exploration: (id: string) => `exploration:${id}`,
  /** Agent events of every run on a branch. */
  agent: (branchId: string) => `agent:${branchId}`,
} as const;
