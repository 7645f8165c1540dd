// The cluster as the composition root builds it: this instance's identity, the shared store of
// instances and leases (none alone), branch ownership, signed peer calls and the internal routes.
import type { Bus } from "../bus/bus.ts";
import type { RedisCommands } from "../bus/redis-commands.ts";
import { defaultInstanceUrl, type InstanceIdentity, newInstanceId } from "./identity.ts";
import { Ownership } from "./ownership.ts";
import { clusterKey, createPeerAuth } from "./peer-auth.ts";
import { createPeers } from "./peer-client.ts";
import { type ClusterRoutes, createClusterRoutes, type OwnerOps } from "./routes.ts";
import { redisClusterStore } from "./store.ts";

export interface ClusterConfig {
  prefix: string;
  instanceUrl: string | null;
  secret: string | undefined;
  leaseMs: number;
  /** Branch leases and calls between instances (false: PROFILE=serverless, instances cannot reach each other). */
  leases: boolean;
}

export interface Cluster {
  identity: InstanceIdentity;
  ownership: Ownership;
  /** The internal routes, serving these owner operations. */
  routes(ops: OwnerOps): ClusterRoutes;
  /** Joins once the server listens (its port is known): heartbeat, sweep, owner hints. */
  start(host: string, port: number): Promise<void>;
  close(): Promise<void>;
}

export function createCluster(
  config: ClusterConfig,
  deps: {
    bus: Bus;
    /** The shared state's Redis/Upstash commands; null alone (in process: no store, nothing forwarded). */
    commands: RedisCommands | null;
    log: { warn(message: string, fields?: Record<string, unknown>): void };
    secretMaterial: string;
  },
): Cluster {
  const identity: InstanceIdentity = { id: newInstanceId(), url: config.instanceUrl ?? "" };
  const auth = createPeerAuth(clusterKey(deps.secretMaterial, config.secret));
  const ownership = new Ownership({
    store: deps.commands && redisClusterStore(deps.commands, config.prefix),
    self: identity,
    peers: createPeers(auth, identity.id),
    leaseMs: config.leaseMs,
    leases: config.leases,
    bus: deps.bus,
    log: deps.log,
  });
  return {
    identity,
    ownership,
    routes: (ops) => createClusterRoutes({ auth, ops, log: deps.log }),
    async start(host, port) {
      identity.url = config.instanceUrl ?? defaultInstanceUrl(host, port);
      await ownership.start();
    },
    close: () => ownership.close(),
  };
}
