// Who this instance is to the others: a random id, new at every start (a restarted process is a new
// instance: whatever the old one held is gone with it), and the URL its peers reach it at.
import { randomBytes } from "node:crypto";

export interface InstanceIdentity {
  id: string;
  /** Base URL peers call (`/internal/cluster/...`); INSTANCE_URL, or the bound host and port. */
  url: string;
}

export function newInstanceId(): string {
  return `inst-${Date.now().toString(36)}-${randomBytes(6).toString("hex")}`;
}

/** The URL other instances use when INSTANCE_URL is not set: the address this process listens on. */
export function defaultInstanceUrl(host: string, port: number): string {
  const reachable = host === "0.0.0.0" || host === "::" ? "127.0.0.1" : host;
  return `http://${reachable.includes(":") ? `[${reachable}]` : reachable}:${port}`;
}
