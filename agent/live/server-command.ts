// The sandbox service of a branch's live agent: `opencode serve` under the in-sandbox supervisor
// (sandbox-agent.mjs), with the same environment as a per-turn run had: opencode's state in the
// workspace (so snapshots carry the conversation), offline, the model reached only through the
// gateway's socket with the server's own token, and a password nobody outside the platform learns.
import { fileURLToPath } from "node:url";
import type { ServiceOptions } from "../../sandbox/provider.ts";
import { AGENT_STATE_DIR, offlineEnv, opencodeBinary, projectConfig } from "../opencode-binary.ts";

const SUPERVISOR = fileURLToPath(new URL("./sandbox-agent.mjs", import.meta.url));
const IN_SANDBOX = {
  opencode: "/opt/occ/opencode",
  supervisor: "/opt/occ/sandbox-agent.mjs",
  gateway: "/run/occ/gateway.sock",
  socketDir: "/run/occ/agent",
};
const MODEL_PORT = 4311;
export const AGENT_SOCKET_NAME = "agent.sock";
/** Where opencode keeps its state, inside the sandbox (in the workspace, so it is snapshotted). */
export const IN_SANDBOX_STATE = `/workspace/${AGENT_STATE_DIR}`;

export interface ServerCommandOptions {
  /** Host path of the model gateway's socket. */
  gatewaySocket: string;
  /** The server's gateway token (it works only while a run is attached to it). */
  token: string;
  /** The server's HTTP Basic password (username "opencode"). */
  password: string;
  /** Host directory (private to the platform) where the supervisor creates the agent's socket. */
  socketDir: string;
}

export function serverCommand(options: ServerCommandOptions): ServiceOptions {
  const bin = opencodeBinary();
  if (!bin) throw new Error("The opencode binary is not installed (npm package opencode-linux-x64)");
  // The cache is not conversation: /tmp (private to the sandbox) keeps it out of snapshots.
  const env = {
    ...offlineEnv(IN_SANDBOX_STATE),
    XDG_CACHE_HOME: "/tmp/opencode-cache",
    HOME: `${IN_SANDBOX_STATE}/home`,
  };
  return {
    binds: [
      { host: bin, sandbox: IN_SANDBOX.opencode },
      { host: SUPERVISOR, sandbox: IN_SANDBOX.supervisor },
      { host: options.gatewaySocket, sandbox: IN_SANDBOX.gateway, writable: true },
      { host: options.socketDir, sandbox: IN_SANDBOX.socketDir, writable: true },
    ],
    env: {
      ...env,
      // A placeholder key: the supervisor signs model requests with the token (see sandbox-agent.mjs).
      OPENCODE_CONFIG_CONTENT: projectConfig(`http://127.0.0.1:${MODEL_PORT}/v1`, "opencode.cloud"),
      OCC_GATEWAY_TOKEN: options.token,
      OPENCODE_SERVER_PASSWORD: options.password,
      OCC_OPENCODE: IN_SANDBOX.opencode,
      OCC_MODEL_PORT: String(MODEL_PORT),
      OCC_GATEWAY_SOCKET: IN_SANDBOX.gateway,
      OCC_AGENT_SOCKET: `${IN_SANDBOX.socketDir}/${AGENT_SOCKET_NAME}`,
    },
    command: `exec node ${IN_SANDBOX.supervisor}`,
  };
}
