// A scripted, OpenAI-compatible model server for offline tests and demos: POST /v1/chat/completions
// with streamed chunks (text as delta.content, tool calls as delta.tool_calls), usage, [DONE].
//
// Replies are chosen statelessly from the request, the way opencode talks to a model: the scenario
// whose `match` occurs in the latest user message, and within it the step numbered by how many tool
// results came back since that message (write -> bash -> final text is three requests).
// Title-generation requests (no tools, "title generator" system prompt) get a short plain title.
//
//   bun scripts/fake-model.ts [--port 4010] [--script scenarios.json]
// With no script, the default scenario writes hello.txt, runs `cat hello.txt`, and answers.
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";

export type Step =
  | { text: string }
  /** A tool call, e.g. { tool: "write", args: { filePath: "/abs/hello.txt", content: "hi" } } */
  | { tool: string; args: Record<string, unknown> };

export interface Scenario {
  /** Substring of the latest user message that selects this scenario (omit for the fallback). */
  match?: string;
  steps: Step[];
  /** Pause between streamed chunks (slow turns for abort tests). */
  chunkDelayMs?: number;
}

export interface RecordedRequest {
  at: number;
  headers: Record<string, string>;
  body: {
    model?: string;
    messages?: { role: string; content?: unknown; tool_calls?: unknown[]; tool_call_id?: string }[];
    tools?: unknown[];
    stream?: boolean;
  };
}

export interface FakeModel {
  url: string;
  /** The base URL to give a client (`${url}/v1`). */
  baseURL: string;
  requests: RecordedRequest[];
  setScenarios(scenarios: Scenario[]): void;
  close(): Promise<void>;
}

const textOf = (content: unknown): string =>
  typeof content === "string"
    ? content
    : Array.isArray(content)
      ? content
          .map((c) =>
            typeof c === "object" && c && "text" in c ? String((c as { text: unknown }).text) : "",
          )
          .join("")
      : "";

/** The scenario and step a request asks for (see the header comment). */
export function pickStep(
  scenarios: Scenario[],
  body: RecordedRequest["body"],
): { scenario: Scenario; step: Step } | null {
  const messages = body.messages ?? [];
  let lastUser = -1;
  messages.forEach((m, i) => {
    if (m.role === "user") lastUser = i;
  });
  const prompt = lastUser >= 0 ? textOf(messages[lastUser]!.content) : "";
  const scenario =
    scenarios.find((s) => s.match !== undefined && prompt.includes(s.match)) ??
    scenarios.find((s) => s.match === undefined);
  if (!scenario) return null;
  const toolResults = messages.slice(lastUser + 1).filter((m) => m.role === "tool").length;
  const step = scenario.steps[Math.min(toolResults, scenario.steps.length - 1)]!;
  return { scenario, step };
}

function isTitleRequest(body: RecordedRequest["body"]): boolean {
  const system = textOf(body.messages?.find((m) => m.role === "system")?.content);
  return (!body.tools || body.tools.length === 0) && /title generator/i.test(system);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function chunk(id: string, model: string, delta: Record<string, unknown>, finish: string | null = null) {
  return {
    id,
    object: "chat.completion.chunk",
    created: Math.floor(Date.now() / 1000),
    model,
    choices: [{ index: 0, delta, finish_reason: finish }],
  };
}

/** Splits text into small pieces, so clients see a real token stream. */
function pieces(text: string): string[] {
  return text.match(/\S+\s*|\s+/g) ?? [text];
}

function reply(step: Step, model: string, delayMs: number, stream: boolean): Response {
  const id = `chatcmpl-${crypto.randomUUID()}`;
  const callId = `call_${crypto.randomUUID().slice(0, 8)}`;
  const usage = { prompt_tokens: 100, completion_tokens: 20, total_tokens: 120 };
  if (!stream) {
    const message =
      "text" in step
        ? { role: "assistant", content: step.text }
        : {
            role: "assistant",
            content: null,
            tool_calls: [
              {
                id: callId,
                type: "function",
                function: { name: step.tool, arguments: JSON.stringify(step.args) },
              },
            ],
          };
    return Response.json({
      id,
      object: "chat.completion",
      created: Math.floor(Date.now() / 1000),
      model,
      choices: [{ index: 0, message, finish_reason: "text" in step ? "stop" : "tool_calls" }],
      usage,
    });
  }
  const encoder = new TextEncoder();
  const body = new ReadableStream<Uint8Array>({
    async start(controller) {
      const send = (data: unknown) => controller.enqueue(encoder.encode(`data: ${JSON.stringify(data)}\n\n`));
      try {
        send(chunk(id, model, { role: "assistant", content: "" }));
        if ("text" in step) {
          for (const piece of pieces(step.text)) {
            if (delayMs) await sleep(delayMs);
            send(chunk(id, model, { content: piece }));
          }
          send(chunk(id, model, {}, "stop"));
        } else {
          const args = JSON.stringify(step.args);
          const half = Math.ceil(args.length / 2);
          send(
            chunk(id, model, {
              tool_calls: [
                { index: 0, id: callId, type: "function", function: { name: step.tool, arguments: "" } },
              ],
            }),
          );
          for (const part of [args.slice(0, half), args.slice(half)]) {
            if (delayMs) await sleep(delayMs);
            send(chunk(id, model, { tool_calls: [{ index: 0, function: { arguments: part } }] }));
          }
          send(chunk(id, model, {}, "tool_calls"));
        }
        send({
          id,
          object: "chat.completion.chunk",
          created: Math.floor(Date.now() / 1000),
          model,
          choices: [],
          usage,
        });
        controller.enqueue(encoder.encode("data: [DONE]\n\n"));
        controller.close();
      } catch {
        // The client went away (an aborted turn): nothing more to send.
      }
    },
  });
  return new Response(body, {
    headers: { "content-type": "text/event-stream", "cache-control": "no-cache" },
  });
}

export function defaultScenarios(projectDir = "/workspace"): Scenario[] {
  return [
    {
      steps: [
        {
          tool: "write",
          args: { filePath: `${projectDir}/hello.txt`, content: "Hello from the fake model\n" },
        },
        { tool: "bash", args: { command: "cat hello.txt", description: "Show the file" } },
        { text: "I wrote hello.txt and printed it. Done." },
      ],
    },
  ];
}

export function startFakeModel(
  options: { port?: number; scenarios?: Scenario[]; apiKey?: string } = {},
): FakeModel {
  let scenarios = options.scenarios ?? defaultScenarios();
  const requests: RecordedRequest[] = [];
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: options.port ?? 0,
    idleTimeout: 0,
    async fetch(request) {
      const url = new URL(request.url);
      if (request.method !== "POST" || !/\/chat\/completions$/.test(url.pathname)) {
        return Response.json(
          { error: { message: `fake model: no route ${request.method} ${url.pathname}` } },
          { status: 404 },
        );
      }
      if (options.apiKey && request.headers.get("authorization") !== `Bearer ${options.apiKey}`) {
        return Response.json(
          { error: { message: "bad api key", type: "invalid_request_error" } },
          { status: 401 },
        );
      }
      let body: RecordedRequest["body"];
      try {
        body = (await request.json()) as RecordedRequest["body"];
      } catch {
        return Response.json({ error: { message: "invalid JSON" } }, { status: 400 });
      }
      requests.push({ at: Date.now(), headers: Object.fromEntries(request.headers), body });
      const model = body.model ?? "fake-model";
      const stream = body.stream !== false;
      if (isTitleRequest(body)) return reply({ text: "Fake session title" }, model, 0, stream);
      const picked = pickStep(scenarios, body);
      if (!picked)
        return Response.json({ error: { message: "fake model: no scenario matches" } }, { status: 400 });
      return reply(picked.step, model, picked.scenario.chunkDelayMs ?? 0, stream);
    },
  });
  const url = `http://127.0.0.1:${server.port}`;
  return {
    url,
    baseURL: `${url}/v1`,
    requests,
    setScenarios(next) {
      scenarios = next;
    },
    close: () => server.stop(true),
  };
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: { port: { type: "string", default: "4010" }, script: { type: "string" } },
  });
  const scenarios = values.script
    ? (JSON.parse(readFileSync(values.script, "utf8")) as Scenario[])
    : undefined;
  const fake = startFakeModel({ port: Number(values.port), scenarios });
  console.log(`fake model listening: baseURL ${fake.baseURL} (any API key; model name is free)`);
}
