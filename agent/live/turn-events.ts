// opencode's raw server events (GET /event) for one session, as the platform's agent events. The
// stream is instance-wide and repeats whole parts on every change; this keeps what a turn needs:
// streamed text, each tool's start, progress and end, step usage, permission asks, errors, and the
// end of the turn (session.idle). One per turn: it remembers which tool calls it has announced.
import { type AgentEvent, permissionAsked, permissionReplied } from "../events.ts";

export interface RawEvent {
  type: string;
  properties?: Record<string, any>;
}

/** The session an opencode event belongs to, wherever that event keeps it. */
export function sessionOf(event: RawEvent): string | undefined {
  const p = event.properties ?? {};
  return p.sessionID ?? p.part?.sessionID ?? p.info?.sessionID;
}

export class TurnEvents {
  private readonly tools = new Map<string, string>();
  /** Whether session.idle arrived: the turn is over. */
  idle = false;

  constructor(readonly sessionId: string) {}

  /** The platform events one raw event stands for (none when it is another session's, or noise). */
  push(event: RawEvent): AgentEvent[] {
    if (sessionOf(event) !== this.sessionId) return [];
    const p = event.properties ?? {};
    switch (event.type) {
      case "message.part.delta":
        return p.field === "text" ? [{ type: "text.delta", partId: p.partID, delta: p.delta }] : [];
      case "message.part.updated":
        return this.part(p.part ?? {});
      case "permission.asked":
        return [permissionAsked(p)];
      case "permission.replied": {
        const replied = permissionReplied(p);
        return replied ? [replied] : [];
      }
      case "session.error":
        // An abort is the platform's own doing: the run says ABORTED, no error event.
        if (p.error?.name === "MessageAbortedError") return [];
        return [{ type: "error", message: p.error?.data?.message ?? p.error?.name ?? "agent error" }];
      case "session.idle":
        this.idle = true;
        return [{ type: "done", sessionId: this.sessionId }];
      default:
        return [];
    }
  }

  private part(part: Record<string, any>): AgentEvent[] {
    if (part.type === "step-finish")
      return [{ type: "step.finished", tokens: part.tokens ?? null, cost: part.cost ?? 0 }];
    if (part.type !== "tool") return [];
    const status = part.state?.status;
    const before = this.tools.get(part.callID);
    this.tools.set(part.callID, status);
    const common = { callId: part.callID, tool: part.tool, input: part.state?.input ?? null };
    if (status === "completed" || status === "error") {
      if (before === "completed" || before === "error") return []; // a repeat of the final state
      return [
        ...(before ? [] : [{ type: "tool.started" as const, ...common }]),
        {
          type: "tool.finished",
          ...common,
          title: part.state?.title ?? null,
          output: part.state?.output ?? null,
          error: part.state?.error ?? null,
        },
      ];
    }
    if (!before) return [{ type: "tool.started", ...common }];
    return [{ type: "tool.updated", ...common, output: part.state?.metadata?.output ?? null }];
  }
}

/** Splits a server-sent event stream into its `data:` payloads, however the chunks fall. */
export class SseParser {
  private buffer = "";
  private readonly decoder = new TextDecoder();

  push(chunk: Uint8Array): string[] {
    this.buffer += this.decoder.decode(chunk, { stream: true });
    const out: string[] = [];
    for (let at = this.buffer.indexOf("\n\n"); at >= 0; at = this.buffer.indexOf("\n\n")) {
      const block = this.buffer.slice(0, at);
      this.buffer = this.buffer.slice(at + 2);
      const data = block
        .split("\n")
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).trimStart())
        .join("\n");
      if (data) out.push(data);
    }
    return out;
  }
}
