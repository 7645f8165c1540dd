// One opencode turn for sandboxes that only dial out (contree microVMs): `opencode run --format json`
// with the binary copied in, the model gateway reached over the VM's outbound network with the run's
// token, and the conversation kept in the workspace (so it forks and rolls back with the files).
// Its JSON lines are translated into the platform's agent events (agent/events.ts).
import type { ExecOptions } from "../sandbox/provider.ts";
import type { AgentEvent } from "./events.ts";
import { AGENT_STATE_DIR, offlineEnv, opencodeBinary, projectConfig } from "./opencode-binary.ts";

const IN_SANDBOX_BINARY = "/opt/occ/opencode";

export interface RunTurnOptions {
  prompt: string;
  /** The model gateway's OpenAI-compatible base URL as the sandbox reaches it (…/v1). */
  gatewayURL: string;
  /** The run's gateway token (not a provider key). */
  token: string;
  title?: string;
}

export function opencodeRunTurn(
  turn: RunTurnOptions,
): Pick<ExecOptions, "command" | "env" | "binds" | "network"> {
  const bin = opencodeBinary();
  if (!bin) throw new Error("The opencode binary is not installed (npm package opencode-linux-x64)");
  const state = `/workspace/${AGENT_STATE_DIR}`;
  return {
    binds: [{ host: bin, sandbox: IN_SANDBOX_BINARY }],
    network: true,
    env: {
      ...offlineEnv(state),
      XDG_CACHE_HOME: "/tmp/opencode-cache",
      OPENCODE_CONFIG_CONTENT: projectConfig(turn.gatewayURL, turn.token),
      OCC_PROMPT: turn.prompt,
      // A title of our own spares the model a title-generation request.
      OCC_TITLE: turn.title ?? "opencode.cloud",
    },
    // --continue picks up the conversation stored in the workspace (a new one on the first turn).
    // The prompt travels in the environment, never through shell quoting, and after `--`, so a
    // prompt starting with "-" is a message, not an option. `run` reads stdin when it is open: none.
    command: `exec ${IN_SANDBOX_BINARY} run --format json --continue --title "$OCC_TITLE" -- "$OCC_PROMPT" </dev/null`,
  };
}

interface RunLine {
  type?: string;
  sessionID?: string;
  part?: {
    id?: string;
    text?: string;
    tool?: string;
    callID?: string;
    reason?: string;
    cost?: number;
    tokens?: { input?: number; output?: number; reasoning?: number };
    state?: { status?: string; input?: unknown; output?: string; error?: string; title?: string };
  };
}

/** One line of `opencode run --format json` as platform agent events (none for other lines). */
export function runLineEvents(line: string): AgentEvent[] {
  if (!line.startsWith("{")) return [];
  let value: RunLine;
  try {
    value = JSON.parse(line) as RunLine;
  } catch {
    return [];
  }
  const part = value.part ?? {};
  switch (value.type) {
    case "text":
      return part.text ? [{ type: "text.delta", partId: part.id ?? "", delta: part.text }] : [];
    case "tool_use": {
      // run prints a tool once, when it completed (or failed).
      const base = {
        callId: part.callID ?? part.id ?? "",
        tool: part.tool ?? "unknown",
        input: part.state?.input,
      };
      return [
        { type: "tool.started", ...base },
        {
          type: "tool.finished",
          ...base,
          output: part.state?.output ?? null,
          error: part.state?.status === "error" ? (part.state.error ?? "failed") : null,
          title: part.state?.title ?? null,
        },
      ];
    }
    case "step_finish": {
      const finished: AgentEvent = {
        type: "step.finished",
        tokens: part.tokens
          ? { input: part.tokens.input, output: part.tokens.output, reasoning: part.tokens.reasoning }
          : null,
        cost: part.cost ?? 0,
      };
      // A step that did not end in tool calls ends the turn.
      return part.reason && part.reason !== "tool-calls"
        ? [finished, { type: "done", sessionId: value.sessionID ?? "" }]
        : [finished];
    }
    case "error": {
      const error = (value as { error?: { name?: string; data?: { message?: string } } }).error;
      const message = error?.data?.message ?? error?.name ?? JSON.stringify(value).slice(0, 2000);
      return [{ type: "error", message }];
    }
    default:
      return [];
  }
}
