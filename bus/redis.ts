// The bus on a Redis server (REDIS_URL), through ioredis: it reconnects by itself and is binary-safe
// on Bun (Bun's built-in client never re-subscribes after a reconnect and mangles binary values). One
// dedicated connection per process blocks in XREAD over every topic the process tails; when that set
// grows, CLIENT UNBLOCK (sent on the command connection) makes the pending XREAD return at once, so
// a new topic is tailed without waiting for the block to time out.
import { Redis } from "ioredis";
import type { RedisCommands } from "./redis-commands.ts";
import {
  createStreamBus,
  parseXRead,
  type StreamBus,
  type StreamEntry,
  type StreamTail,
} from "./stream-bus.ts";
import type { StreamId } from "./stream-ids.ts";

/** How long one XREAD blocks when nothing arrives (it also bounds how long a dead socket goes unseen). */
const BLOCK_MS = 15_000;
/** Entries one XREAD returns per stream at most (the rest come on the next round). */
const COUNT = 500;

/**
 * A command connection to REDIS_URL: RESP2 replies (the same shapes as Upstash's, and what any Redis
 * 6.2+ speaks); commands wait through a short reconnect (a few retries) and then fail.
 */
export function connectRedis(url: string, name = "occ"): Redis {
  const client = new Redis(url, {
    protocol: 2,
    connectionName: name,
    maxRetriesPerRequest: 3,
    // A hung connection is noticed within a minute even without traffic (TCP keep-alive probes).
    keepAlive: 30_000,
  });
  client.on("error", () => {}); // ioredis reconnects by itself; failing commands are reported by callers
  return client;
}

export class RedisStreamTail implements StreamTail {
  private clientId: number | null = null;
  private blocked = false;
  private interrupted = false;
  private closed = false;

  /**
   * `reader` is used for nothing else (it blocks) and has a connection name unique to this process;
   * `control` finds its client id by that name and sends CLIENT UNBLOCK.
   */
  constructor(
    private readonly reader: Redis,
    private readonly control: Redis,
    private readonly name: string,
  ) {
    // After a reconnect the reader is another client (ioredis resends the XREAD it was blocked in).
    reader.on("close", () => {
      this.clientId = null;
    });
  }

  async read(positions: Map<string, StreamId>): Promise<Map<string, StreamEntry[]>> {
    if (this.closed) return new Map();
    if (this.interrupted) {
      this.interrupted = false;
      return new Map();
    }
    const keys = [...positions.keys()];
    this.blocked = true;
    try {
      const reply = await this.reader.call(
        "XREAD",
        "COUNT",
        COUNT,
        "BLOCK",
        BLOCK_MS,
        "STREAMS",
        ...keys,
        ...keys.map((key) => positions.get(key)!),
      );
      return parseXRead(reply);
    } finally {
      this.blocked = false;
      this.interrupted = false;
    }
  }

  interrupt(): void {
    if (!this.blocked) {
      this.interrupted = true;
      return;
    }
    void this.unblock();
  }

  private async readerId(): Promise<number | null> {
    if (this.clientId !== null) return this.clientId;
    const list = String(await this.control.call("CLIENT", "LIST", "TYPE", "normal"));
    for (const line of list.split("\n"))
      if (line.includes(` name=${this.name} `)) {
        this.clientId = Number(/^id=(\d+)/.exec(line)?.[1]);
        break;
      }
    return this.clientId;
  }

  /** The XREAD may not have reached the server yet when UNBLOCK does: then try again shortly. */
  private async unblock(): Promise<void> {
    for (let attempt = 0; attempt < 40 && this.blocked && !this.closed; attempt++) {
      const id = await this.readerId().catch(() => null);
      const unblocked = id === null ? 0 : await this.control.client("UNBLOCK", id).catch(() => 0);
      if (Number(unblocked) === 1) return;
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    this.reader.disconnect();
  }
}

export function createRedisBus(options: {
  /** The command connection (shared with the rate limiter); the bus adds its own blocking reader. */
  client: Redis;
  commands: RedisCommands;
  prefix: string;
  maxLen: number;
  retentionMs: number;
  onError?: (message: string, fields: Record<string, unknown>) => void;
}): StreamBus {
  // The reader waits as long as it takes through reconnects: an XREAD cut by a dropped connection is
  // resent as it was (same cursors), so nothing is skipped.
  const name = `occ-bus-reader-${crypto.randomUUID().slice(0, 8)}`;
  const reader = options.client.duplicate({ maxRetriesPerRequest: null, connectionName: name });
  reader.on("error", () => {}); // ioredis reconnects by itself
  return createStreamBus({
    commands: options.commands,
    tail: new RedisStreamTail(reader, options.client, name),
    prefix: options.prefix,
    maxLen: options.maxLen,
    retentionMs: options.retentionMs,
    onError: options.onError,
  });
}
