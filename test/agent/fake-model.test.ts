// The fake model speaks OpenAI's streaming chat-completions protocol as opencode expects it.
import { afterAll, expect, test } from "bun:test";
import { pickStep, startFakeModel } from "../../scripts/fake-model.ts";

const fake = startFakeModel({
  apiKey: "sk-test",
  scenarios: [
    { match: "numbers", steps: [{ tool: "bash", args: { command: "seq 3" } }, { text: "one two three" }] },
    { steps: [{ text: "fallback answer" }] },
  ],
});
afterAll(() => fake.close());

async function stream(
  messages: unknown[],
  tools: unknown[] = [{ type: "function", function: { name: "bash" } }],
) {
  const res = await fetch(`${fake.baseURL}/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: "Bearer sk-test" },
    body: JSON.stringify({
      model: "m",
      messages,
      tools,
      stream: true,
      stream_options: { include_usage: true },
    }),
  });
  expect(res.headers.get("content-type")).toContain("text/event-stream");
  const lines = (await res.text()).split("\n\n").filter(Boolean);
  expect(lines.at(-1)).toBe("data: [DONE]");
  return lines.slice(0, -1).map((l) => JSON.parse(l.slice("data: ".length)));
}

test("a tool call streams as delta.tool_calls with arguments in fragments, then finish_reason tool_calls", async () => {
  const chunks = await stream([{ role: "user", content: "print numbers" }]);
  const calls = chunks.flatMap((c) => c.choices[0]?.delta?.tool_calls ?? []);
  expect(calls[0]).toMatchObject({ index: 0, type: "function", function: { name: "bash", arguments: "" } });
  expect(JSON.parse(calls.map((c: any) => c.function.arguments).join(""))).toEqual({ command: "seq 3" });
  expect(chunks.find((c) => c.choices[0]?.finish_reason)?.choices[0].finish_reason).toBe("tool_calls");
  expect(chunks.at(-1).usage.total_tokens).toBeGreaterThan(0);
});

test("after a tool result the next step is text, streamed in pieces, finish_reason stop", async () => {
  const chunks = await stream([
    { role: "user", content: "print numbers" },
    {
      role: "assistant",
      tool_calls: [{ id: "c1", type: "function", function: { name: "bash", arguments: "{}" } }],
    },
    { role: "tool", tool_call_id: "c1", content: "1\n2\n3\n" },
  ]);
  const text = chunks.map((c) => c.choices[0]?.delta?.content ?? "").join("");
  expect(text).toBe("one two three");
  expect(chunks.filter((c) => c.choices[0]?.delta?.content).length).toBeGreaterThan(1);
  expect(chunks.find((c) => c.choices[0]?.finish_reason)?.choices[0].finish_reason).toBe("stop");
});

test("title requests get a plain title; a bad key is refused; requests are recorded", async () => {
  const chunks = await stream(
    [
      { role: "system", content: "You are a title generator." },
      { role: "user", content: "x" },
    ],
    [],
  );
  expect(chunks.map((c) => c.choices[0]?.delta?.content ?? "").join("")).toBe("Fake session title");
  const bad = await fetch(`${fake.baseURL}/chat/completions`, {
    method: "POST",
    headers: { authorization: "Bearer nope" },
    body: "{}",
  });
  expect(bad.status).toBe(401);
  expect(fake.requests.length).toBe(3);
  expect(
    pickStep([{ steps: [{ text: "x" }] }], { messages: [{ role: "user", content: "anything" }] })?.step,
  ).toEqual({ text: "x" });
});
