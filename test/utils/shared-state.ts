// Real shared-state backends for tests: a redis-server on an ephemeral port, and the fake Upstash REST
// server (scripts/fake-upstash.ts) in front of it. On CI redis-server must be there (npm's postinstall
// installs it, scripts/system-deps.mjs); elsewhere a missing one skips these tests with the command.
import { afterAll, beforeAll } from "bun:test";
import { type FakeUpstash, startFakeUpstash } from "../../scripts/fake-upstash.ts";
import { type RedisServer, redisServerBinary, startRedisServer } from "../../scripts/lib/redis-server.ts";

export type { FakeUpstash, RedisServer };
export { startFakeUpstash, startRedisServer };

/** True when the tests needing redis-server must be skipped (never on CI, where they must run). */
export function skipWithoutRedis(): boolean {
  if (redisServerBinary()) return false;
  if (process.env.CI) return false; // then startRedisServer fails the test, as it should
  console.warn("redis-server is not installed: Redis/Upstash tests skipped (apt-get install redis-server)");
  return true;
}

/** The environment that points a server at a shared-state backend. */
export function sharedEnv(
  kind: "redis" | "upstash",
  redis: RedisServer,
  upstash?: FakeUpstash,
): Record<string, string> {
  return kind === "redis"
    ? { REDIS_URL: redis.url }
    : { UPSTASH_REDIS_REST_URL: upstash!.url, UPSTASH_REDIS_REST_TOKEN: upstash!.token };
}

/**
 * A redis-server and the fake Upstash in front of it for one test file: started before its tests,
 * stopped after them (`beforeStop` first, e.g. to disconnect the file's own clients). Call at the top
 * level of the file; `skip` says whether redis-server is missing here.
 */
export function useSharedBackends(beforeStop?: () => void | Promise<void>): {
  skip: boolean;
  readonly redis: RedisServer;
  readonly upstash: FakeUpstash;
} {
  const skip = skipWithoutRedis();
  let redis: RedisServer | undefined;
  let upstash: FakeUpstash | undefined;
  beforeAll(async () => {
    if (skip) return;
    redis = await startRedisServer();
    upstash = await startFakeUpstash({ redisUrl: redis.url });
  });
  afterAll(async () => {
    await beforeStop?.();
    await upstash?.stop();
    await redis?.stop();
  });
  return {
    skip,
    get redis() {
      return redis!;
    },
    get upstash() {
      return upstash!;
    },
  };
}
