// One opencode turn as a sandbox command: the binary, the forwarder and the driver are bound in
// read-only, the gateway socket is the only way out, and the agent's state lives in the workspace
// (so snapshots carry the conversation: a fork continues it, a rollback forgets).
import { fileURLToPath } from "node:url";
import type { ExecOptions } from "../sandbox/provider.ts";
import { offlineEnv, opencodeBinary, projectConfig } from "./opencode-binary.ts";

const FORWARDER = fileURLToPath(new URL("./forwarder.mjs", import.meta.url));
const DRIVER = fileURLToPath(new URL("./driver.mjs", import.meta.url));
const IN_SANDBOX = {
  opencode: "/opt/occ/opencode",
  forwarder: "/opt/occ/forwarder.mjs",
  driver: "/opt/occ/driver.mjs",
  socket: "/run/occ/gateway.sock",
};
export const AGENT_STATE_DIR = ".opencode-state";
const MODEL_PORT = 4311;

export interface TurnOptions {
  prompt: string;
  /** Host path of the model gateway's socket. */
  gatewaySocket: string;
  /** The run's gateway token (not a provider key). */
  token: string;
  title?: string;
}

/**
 * One turn through `opencode serve` and the in-sandbox driver: stdout carries normalised agent
 * events as JSON lines (text deltas, tool started/updated/finished, step usage, done).
 */
export function opencodeTurn(turn: TurnOptions): Pick<ExecOptions, "command" | "env" | "binds"> {
  const bin = opencodeBinary();
  if (!bin) throw new Error("The opencode binary is not installed (npm package opencode-linux-x64)");
  const state = `/workspace/${AGENT_STATE_DIR}`;
  // The offline environment, re-rooted inside the workspace (cache on /tmp: it is not conversation).
  const env = { ...offlineEnv(state), XDG_CACHE_HOME: "/tmp/opencode-cache", HOME: `${state}/home` };
  return {
    binds: [
      { host: bin, sandbox: IN_SANDBOX.opencode },
      { host: FORWARDER, sandbox: IN_SANDBOX.forwarder },
      { host: DRIVER, sandbox: IN_SANDBOX.driver },
      { host: turn.gatewaySocket, sandbox: IN_SANDBOX.socket, writable: true },
    ],
    env: {
      ...env,
      OPENCODE_CONFIG_CONTENT: projectConfig(`http://127.0.0.1:${MODEL_PORT}/v1`, turn.token),
      OCC_PROMPT: turn.prompt,
      OCC_TITLE: turn.title ?? "opencode.cloud",
      OCC_OPENCODE: IN_SANDBOX.opencode,
      OCC_STATE: `${state}/occ`,
    },
    // The prompt travels in the environment, never through shell quoting.
    command: [
      `node ${IN_SANDBOX.forwarder} ${MODEL_PORT} ${IN_SANDBOX.socket} /tmp/occ-forwarder.ready &`,
      // Wait (up to 5 s) until the forwarder listens; exit 70 (EX_SOFTWARE) if it never does.
      "i=0; while [ ! -e /tmp/occ-forwarder.ready ]; do i=$((i+1)); [ $i -gt 250 ] && exit 70; sleep 0.02; done",
      `exec node ${IN_SANDBOX.driver}`,
    ].join("\n"),
  };
}
