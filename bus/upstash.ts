// The bus on Upstash's REST API (UPSTASH_REDIS_REST_URL + _TOKEN). REST cannot block on a stream read,
// so the tail learns of new entries from a wake-up channel: every publish also PUBLISHes its stream's
// key to one channel, which each process follows over SSE (POST /subscribe/<channel>), and a wake-up
// makes it read the woken streams with one non-blocking XREAD. A new topic is read at once; after the
// SSE stream (re)connects, and every SAFETY_POLL_MS, all tailed topics are read, so a wake-up lost
// while disconnected delays an event, never loses it. @upstash/redis's own subscribe is not used: it
// does not reconnect (nor tell) when its stream ends; this one reconnects with backoff and checks the
// stream is alive with a ping when the channel has been silent a while.
//
// Commands (each billed by Upstash): a publish is one EVALSHA (XADD, PEXPIRE, PUBLISH inside). A
// process with tailed topics sends one XREAD per burst of wake-ups (wake-ups that arrive while a read
// is under way share the next one), one XREAD per SAFETY_POLL_MS at rest, and one PUBLISH ping per
// PING_AFTER_MS of silence on the channel (a ping any process sends counts for all). At rest that is
// about 0.1 command/s per process; under load about (1 + processes) commands per publish at worst.
import type { RedisCommands } from "./redis-commands.ts";
import {
  createStreamBus,
  parseXRead,
  type StreamBus,
  type StreamEntry,
  type StreamTail,
} from "./stream-bus.ts";
import type { StreamId } from "./stream-ids.ts";

const COUNT = 500;
/** A full read of every tailed topic this often, whatever the wake-ups say. */
const SAFETY_POLL_MS = 10_000;
/** After this long without any message on the channel, a ping checks that the SSE stream is alive. */
const PING_AFTER_MS = 30_000;
/** A ping not heard back within this long means the stream is dead: reconnect it. */
const PING_TIMEOUT_MS = 5_000;
const PING = "ping";

export interface UpstashTailOptions {
  url: string;
  token: string;
  channel: string;
  commands: RedisCommands;
  onError?: (message: string, fields: Record<string, unknown>) => void;
}

export class UpstashStreamTail implements StreamTail {
  /** Stream keys a wake-up named since they were last read. */
  private readonly woken = new Set<string>();
  /** Keys read at least once since they were tailed (a key not in it is read at once). */
  private known = new Set<string>();
  /** Read every tailed key on the next round (start, SSE reconnect, safety poll). */
  private full = true;
  private signal: (() => void) | undefined;
  private interrupted = false;
  private closed = false;
  private sse: AbortController | undefined;
  private lastHeard = Date.now();
  private pingSentAt: number | null = null;
  private readonly timer: ReturnType<typeof setInterval>;

  constructor(private readonly options: UpstashTailOptions) {
    void this.listen();
    this.timer = setInterval(() => this.tick(), Math.min(SAFETY_POLL_MS, PING_TIMEOUT_MS));
    (this.timer as { unref?: () => void }).unref?.();
  }

  private lastFull = Date.now();

  private tick() {
    const now = Date.now();
    if (now - this.lastFull >= SAFETY_POLL_MS) {
      this.full = true;
      this.notify();
    }
    if (
      this.pingSentAt !== null &&
      this.lastHeard < this.pingSentAt &&
      now - this.pingSentAt > PING_TIMEOUT_MS
    ) {
      this.options.onError?.("bus: the Upstash wake-up stream went silent; reconnecting", {});
      this.pingSentAt = null;
      this.sse?.abort();
    } else if (this.pingSentAt === null && now - this.lastHeard > PING_AFTER_MS) {
      this.pingSentAt = now;
      void this.options.commands.call(["PUBLISH", this.options.channel, PING]).catch(() => {});
    }
  }

  private notify() {
    const resume = this.signal;
    this.signal = undefined;
    resume?.();
  }

  async read(positions: Map<string, StreamId>): Promise<Map<string, StreamEntry[]>> {
    for (;;) {
      // The set of tailed topics changed: return, so the caller asks again with the new positions.
      if (this.closed || this.interrupted) {
        this.interrupted = false;
        return new Map();
      }
      const keys = [...positions.keys()].filter(
        (key) => this.full || this.woken.has(key) || !this.known.has(key),
      );
      if (keys.length > 0) {
        if (this.full) this.lastFull = Date.now();
        this.full = false;
        for (const key of keys) this.woken.delete(key);
        this.known = new Set(positions.keys());
        const reply = await this.options.commands.call([
          "XREAD",
          "COUNT",
          COUNT,
          "STREAMS",
          ...keys,
          ...keys.map((key) => positions.get(key)!),
        ]);
        const entries = parseXRead(reply);
        // A full page means more is waiting: read that stream again on the next round.
        for (const [key, list] of entries) if (list.length >= COUNT) this.woken.add(key);
        return entries;
      }
      // Wake-ups for streams nobody here tails are forgotten.
      for (const key of this.woken) if (!positions.has(key)) this.woken.delete(key);
      await new Promise<void>((resolve) => {
        this.signal = resolve;
      });
    }
  }

  interrupt(): void {
    this.interrupted = true;
    this.notify();
  }

  poke(key: string): void {
    this.woken.add(key);
    this.notify();
  }

  /** Follows the wake-up channel over SSE, reconnecting with backoff whenever the stream ends. */
  private async listen(): Promise<void> {
    let failures = 0;
    const { url, token, channel } = this.options;
    while (!this.closed) {
      const controller = new AbortController();
      this.sse = controller;
      try {
        // As @upstash/redis sends it: POST, an empty command array as the body.
        const response = await fetch(`${url}/subscribe/${encodeURIComponent(channel)}`, {
          method: "POST",
          headers: {
            authorization: `Bearer ${token}`,
            accept: "text/event-stream",
            "content-type": "application/json",
          },
          body: "[]",
          signal: controller.signal,
        });
        if (!response.ok || !response.body) throw new Error(`subscribe answered HTTP ${response.status}`);
        const decoder = new TextDecoder();
        let buffer = "";
        for await (const chunk of response.body) {
          buffer += decoder.decode(chunk, { stream: true });
          const lines = buffer.split("\n");
          buffer = lines.pop() ?? "";
          for (const line of lines) {
            if (!line.startsWith("data:")) continue;
            failures = 0;
            this.heard(line.slice(5).trimStart());
          }
        }
      } catch (error) {
        if (this.closed) break;
        failures++;
        if (failures === 1 || failures % 20 === 0)
          this.options.onError?.("bus: the Upstash wake-up stream failed; reconnecting", {
            error: String(error),
            failures,
          });
      }
      if (this.closed) break;
      await new Promise((resolve) => setTimeout(resolve, Math.min(100 * 2 ** Math.min(failures, 6), 5000)));
    }
  }

  /** One SSE data line: "subscribe,<channel>,<n>" or "message,<channel>,<stream key>". */
  private heard(data: string) {
    this.lastHeard = Date.now();
    this.pingSentAt = null;
    const first = data.indexOf(",");
    const kind = data.slice(0, first);
    const message = data.slice(data.indexOf(",", first + 1) + 1);
    if (kind === "subscribe") {
      // (Re)connected: whatever was published while the stream was down is read now.
      this.full = true;
      this.notify();
    } else if (kind === "message" && message !== PING) {
      this.woken.add(message);
      this.notify();
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    this.sse?.abort();
    this.notify();
  }
}

export function createUpstashBus(options: {
  url: string;
  token: string;
  commands: RedisCommands;
  prefix: string;
  maxLen: number;
  retentionMs: number;
  onError?: (message: string, fields: Record<string, unknown>) => void;
}): StreamBus {
  const channel = `${options.prefix}bus-wake`;
  return createStreamBus({
    commands: options.commands,
    tail: new UpstashStreamTail({
      url: options.url.replace(/\/+$/, ""),
      token: options.token,
      channel,
      commands: options.commands,
      onError: options.onError,
    }),
    prefix: options.prefix,
    maxLen: options.maxLen,
    retentionMs: options.retentionMs,
    wakeChannel: channel,
    onError: options.onError,
  });
}
