// What an opencode client (the TUI of `opencode attach`, the SDK) may ask of a branch's live server
// through the platform's proxy. Reads are for anyone with access to the branch; writes for editors
// and owners; requests that start an agent loop become PROMPT runs (queued with the branch's other
// runs, metered, snapshotted); whatever would let a client act outside runs or reach past the
// sandbox (terminals, provider credentials, config, MCP servers, disposing the instance, the
// experimental and v2 write surfaces) is refused for everyone. An allowlist: opencode's new write
// endpoints stay refused until someone decides they are safe.

export type AttachRequest =
  | { kind: "read" }
  /** Starts an agent loop on `sessionId`: a run, whose input is what the client asked for. */
  | { kind: "turn"; sessionId: string; input: (body: unknown) => string }
  /** Stops the session's loop: the run in progress is aborted (so it ends ABORTED). */
  | { kind: "abort"; sessionId: string }
  | { kind: "write" }
  | { kind: "refused"; reason: string };

const ID = "([A-Za-z0-9_-]{1,128})";
const TURNS: [RegExp, (body: Record<string, any>) => string][] = [
  [new RegExp(`^/session/${ID}/(?:message|prompt_async)$`), (body) => textOf(body.parts)],
  [
    new RegExp(`^/session/${ID}/command$`),
    (body) => `/${String(body.command ?? "")} ${String(body.arguments ?? "")}`.trim(),
  ],
  [new RegExp(`^/session/${ID}/shell$`), (body) => `!${String(body.command ?? "")}`],
  [new RegExp(`^/session/${ID}/summarize$`), () => "/compact"],
  [new RegExp(`^/session/${ID}/init$`), () => "/init"],
];
const WRITES: [string, RegExp][] = [
  ["POST", /^\/session$/],
  ["PATCH", new RegExp(`^/session/${ID}$`)],
  ["DELETE", new RegExp(`^/session/${ID}$`)],
  ["POST", new RegExp(`^/session/${ID}/(?:fork|revert|unrevert)$`)],
  ["POST", new RegExp(`^/session/${ID}/permissions/${ID}$`)],
  ["DELETE", new RegExp(`^/session/${ID}/message/${ID}(?:/part/${ID})?$`)],
  ["PATCH", new RegExp(`^/session/${ID}/message/${ID}/part/${ID}$`)],
  ["POST", new RegExp(`^/permission/${ID}/reply$`)],
  ["POST", new RegExp(`^/question/${ID}/(?:reply|reject)$`)],
  // The TUI's remote-control surface: events for attached TUIs, nothing runs.
  ["POST", /^\/tui\/[a-z-]+(?:\/[a-z-]+)?$/],
  ["POST", /^\/log$/],
];
/** Reads that open something other than a reading: terminals (a shell outside any run). */
const REFUSED_READS = [/^\/pty(?:\/|$)/, /^\/api\/pty(?:\/|$)/];

function textOf(parts: unknown): string {
  if (!Array.isArray(parts)) return "";
  return parts
    .filter((p): p is { type: string; text: string } => p?.type === "text" && typeof p.text === "string")
    .map((p) => p.text)
    .join("\n");
}

export function classifyAttach(method: string, path: string): AttachRequest {
  if (method === "GET" || method === "HEAD") {
    if (REFUSED_READS.some((re) => re.test(path)))
      return { kind: "refused", reason: "Terminals are not available through opencode.cloud; use exec" };
    return { kind: "read" };
  }
  if (method === "POST") {
    for (const [pattern, input] of TURNS) {
      const m = pattern.exec(path);
      if (m)
        return {
          kind: "turn",
          sessionId: m[1]!,
          input: (body) => input((body && typeof body === "object" ? body : {}) as Record<string, any>),
        };
    }
    const abort = new RegExp(`^/session/${ID}/abort$`).exec(path);
    if (abort) return { kind: "abort", sessionId: abort[1]! };
  }
  if (WRITES.some(([m, pattern]) => m === method && pattern.test(path))) return { kind: "write" };
  return {
    kind: "refused",
    reason: `${method} ${path} is not available through opencode.cloud (the agent's configuration, credentials, terminals and instance are the platform's)`,
  };
}
