// Runs inside the sandbox (plain Node, no dependencies): one agent turn through `opencode serve`,
// printed as normalised agent events, one JSON object per line on stdout:
//   {"type":"text.delta","partId","delta"}        streamed answer text
//   {"type":"tool.started"|"tool.updated"|"tool.finished","callId","tool","input","output","error","title"}
//   {"type":"step.finished","tokens":{input,output,reasoning,cache},"cost"}
//   {"type":"permission.asked","id","permission","patterns"}
//   {"type":"error","message"}
//   {"type":"done","sessionId"}
// The opencode session id is kept in the workspace ($OCC_STATE/session-id), with opencode's own data,
// so a fork of a snapshot continues the conversation and a rollback forgets what came after.
// Environment: OCC_OPENCODE (binary), OCC_PROMPT, OCC_TITLE, OCC_STATE, plus opencode's own variables.
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const emit = (event) => process.stdout.write(`${JSON.stringify(event)}\n`);
const fail = (message, code = 1) => {
  emit({ type: "error", message });
  process.exit(code);
};

const state = process.env.OCC_STATE;
mkdirSync(state, { recursive: true });
const password = randomBytes(18).toString("base64url");
const auth = `Basic ${Buffer.from(`opencode:${password}`).toString("base64")}`;

// 1. The server, on loopback only, protected by a password nobody else knows.
const server = spawn(process.env.OCC_OPENCODE, ["serve", "--port", "0", "--hostname", "127.0.0.1"], {
  env: { ...process.env, OPENCODE_SERVER_PASSWORD: password },
  stdio: ["ignore", "pipe", "inherit"],
});
const stop = () => server.kill("SIGKILL");
process.on("exit", stop);
const base = await new Promise((resolve) => {
  let seen = "";
  server.stdout.on("data", (data) => {
    seen += data;
    const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(seen);
    if (m) resolve(m[1]);
  });
  server.on("exit", (code) => fail(`opencode serve exited (${code}) before listening`));
});
const api = async (method, path, body) => {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: { authorization: auth, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
  return res.status === 204 ? null : res.json();
};

// 2. The session: the one this workspace already has, or a new one.
const idFile = join(state, "session-id");
let sessionId;
try {
  sessionId = readFileSync(idFile, "utf8").trim();
  await api("GET", `/session/${sessionId}`);
} catch {
  sessionId = (await api("POST", "/session", { title: process.env.OCC_TITLE || "opencode.cloud" })).id;
  writeFileSync(idFile, sessionId);
}

// 3. Follow the event stream (filtered to this session), then send the prompt.
const events = await fetch(`${base}/event`, {
  headers: { authorization: auth, accept: "text/event-stream" },
});
const abort = async () => {
  await api("POST", `/session/${sessionId}/abort`).catch(() => {});
  process.exit(130);
};
process.on("SIGTERM", abort);
process.on("SIGINT", abort);
await api("POST", `/session/${sessionId}/prompt_async`, {
  parts: [{ type: "text", text: process.env.OCC_PROMPT }],
});

const tools = new Map(); // callID -> last status
const decoder = new TextDecoder();
let buffer = "";
for await (const chunk of events.body) {
  buffer += decoder.decode(chunk, { stream: true });
  for (let at = buffer.indexOf("\n\n"); at >= 0; at = buffer.indexOf("\n\n")) {
    const block = buffer.slice(0, at);
    buffer = buffer.slice(at + 2);
    const data = block
      .split("\n")
      .filter((l) => l.startsWith("data:"))
      .map((l) => l.slice(5).trim())
      .join("");
    if (!data) continue;
    let event;
    try {
      event = JSON.parse(data);
    } catch {
      continue;
    }
    const p = event.properties ?? {};
    const sid = p.sessionID ?? p.part?.sessionID ?? p.info?.sessionID;
    if (sid !== sessionId) continue;
    switch (event.type) {
      case "message.part.delta":
        if (p.field === "text")
          emit({ type: "text.delta", partId: p.partID, messageId: p.messageID, delta: p.delta });
        break;
      case "message.part.updated": {
        const part = p.part;
        if (part.type === "tool") {
          const status = part.state?.status;
          const before = tools.get(part.callID);
          tools.set(part.callID, status);
          const common = { callId: part.callID, tool: part.tool, input: part.state?.input ?? null };
          if (status === "completed" || status === "error") {
            if (!before) emit({ type: "tool.started", ...common });
            emit({
              type: "tool.finished",
              ...common,
              title: part.state?.title ?? null,
              output: part.state?.output ?? null,
              error: part.state?.error ?? null,
            });
          } else if (!before) {
            emit({ type: "tool.started", ...common });
          } else {
            emit({ type: "tool.updated", ...common, output: part.state?.metadata?.output ?? null });
          }
        } else if (part.type === "step-finish") {
          emit({ type: "step.finished", tokens: part.tokens ?? null, cost: part.cost ?? 0 });
        }
        break;
      }
      case "permission.asked":
        emit({ type: "permission.asked", id: p.id, permission: p.permission, patterns: p.patterns ?? [] });
        break;
      case "session.error":
        emit({ type: "error", message: p.error?.data?.message ?? p.error?.name ?? "agent error" });
        break;
      case "session.idle":
        emit({ type: "done", sessionId });
        process.exit(0);
    }
  }
}
fail("the event stream ended before the turn did");
