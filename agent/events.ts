// The platform's own agent events (what GraphQL streams), parsed from the in-sandbox driver's JSON
// lines. opencode's raw shapes never reach clients.

export type AgentEvent =
  | { type: "text.delta"; partId: string; delta: string }
  | {
      type: "tool.started" | "tool.updated" | "tool.finished";
      callId: string;
      tool: string;
      input: unknown;
      output?: string | null;
      error?: string | null;
      title?: string | null;
    }
  | {
      type: "step.finished";
      tokens: { input?: number; output?: number; reasoning?: number } | null;
      cost: number;
    }
  | { type: "permission.asked"; id: string; permission: string; patterns: string[] }
  | { type: "error"; message: string }
  | { type: "done"; sessionId: string };

const TYPES = new Set([
  "text.delta",
  "tool.started",
  "tool.updated",
  "tool.finished",
  "step.finished",
  "permission.asked",
  "error",
  "done",
]);

/** One line of driver output as an event; null for anything else (logs, partial lines). */
export function parseAgentLine(line: string): AgentEvent | null {
  if (!line.startsWith("{")) return null;
  try {
    const value = JSON.parse(line) as { type?: unknown };
    return typeof value.type === "string" && TYPES.has(value.type) ? (value as AgentEvent) : null;
  } catch {
    return null;
  }
}

/** Splits a byte stream into lines, however the chunks fall. */
export class LineSplitter {
  private buffer = "";
  private readonly decoder = new TextDecoder();
  push(data: Uint8Array): string[] {
    this.buffer += this.decoder.decode(data, { stream: true });
    const lines = this.buffer.split("\n");
    this.buffer = lines.pop() ?? "";
    return lines;
  }
}
