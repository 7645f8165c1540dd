// The few things the bus and the shared limits need from Redis, over either client: ioredis (a TCP
// connection, REDIS_URL) or @upstash/redis (Upstash's REST API). Lua scripts keep every multi-step
// change atomic in one command (and one billed command on Upstash).
import { createHash } from "node:crypto";
import type { Redis as UpstashRedis } from "@upstash/redis";
import type { Redis as IORedis } from "ioredis";

export interface LuaScript {
  source: string;
  sha: string;
}

export function lua(source: string): LuaScript {
  return { source, sha: createHash("sha1").update(source).digest("hex") };
}

export type Arg = string | number;

export interface RedisCommands {
  /**
   * Runs a script (EVALSHA, loading it once on NOSCRIPT). `ordered` calls run one after another in the
   * order they were made (one TCP connection is ordered anyway; over REST they go in one pipeline).
   */
  script(script: LuaScript, keys: string[], args: Arg[], options?: { ordered?: boolean }): Promise<unknown>;
  /** Any other command, e.g. ["XREAD", "COUNT", 100, "STREAMS", key, id]. */
  call(args: Arg[]): Promise<unknown>;
}

const isNoScript = (error: unknown) => String((error as Error)?.message ?? error).includes("NOSCRIPT");

export function ioredisCommands(client: IORedis): RedisCommands {
  return {
    async script(script, keys, args) {
      try {
        return await client.evalsha(script.sha, keys.length, ...keys, ...args);
      } catch (error) {
        if (!isNoScript(error)) throw error;
        return client.eval(script.source, keys.length, ...keys, ...args);
      }
    },
    call: ([command, ...args]) => client.call(String(command), ...args),
  };
}

/**
 * Over REST, concurrent requests may reach Redis in any order, so ordered scripts wait in a queue and
 * go as one /pipeline request at a time (Upstash runs a pipeline's commands in order). Everything else
 * is sent at once.
 */
export function upstashCommands(redis: UpstashRedis): RedisCommands {
  type Pending = {
    script: LuaScript;
    keys: string[];
    args: Arg[];
    resolve: (value: unknown) => void;
    reject: (error: unknown) => void;
    retried?: boolean;
  };
  const queue: Pending[] = [];
  let flushing = false;
  /** Scripts loaded before their first ordered call, so a batch rarely meets NOSCRIPT midway. */
  const loaded = new Set<string>();

  async function flush(): Promise<void> {
    if (flushing) return;
    flushing = true;
    try {
      while (queue.length > 0) {
        const batch = queue.splice(0);
        try {
          for (const p of batch)
            if (!loaded.has(p.script.sha)) {
              await redis.scriptLoad(p.script.source);
              loaded.add(p.script.sha);
            }
          const pipeline = redis.pipeline();
          for (const p of batch) pipeline.evalsha(p.script.sha, p.keys, p.args.map(String));
          const results = await pipeline.exec({ keepErrors: true });
          const reload: Pending[] = [];
          results.forEach((r, i) => {
            const p = batch[i]!;
            if (r.error && isNoScript(r.error) && !p.retried) reload.push(p);
            else if (r.error) p.reject(new Error(r.error));
            else p.resolve(r.result);
          });
          // Scripts the server does not know yet (or any more): load them and send those calls again,
          // ahead of everything queued meanwhile, so the order holds.
          if (reload.length > 0) {
            for (const p of reload) {
              loaded.delete(p.script.sha);
              p.retried = true;
            }
            queue.unshift(...reload);
          }
        } catch (error) {
          for (const p of batch) p.reject(error);
        }
      }
    } finally {
      flushing = false;
    }
  }

  return {
    async script(script, keys, args, options) {
      if (options?.ordered) {
        return new Promise((resolve, reject) => {
          queue.push({ script, keys, args, resolve, reject });
          void flush();
        });
      }
      try {
        return await redis.evalsha(script.sha, keys, args.map(String));
      } catch (error) {
        if (!isNoScript(error)) throw error;
        return redis.eval(script.source, keys, args.map(String));
      }
    },
    call: (args) => redis.exec(args.map(String) as [string, ...string[]]),
  };
}
