// The model gateway over its real unix socket, in front of the fake model: per-run tokens, real
// credentials added here, streaming passed through, usage counted from the provider's stream.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ModelGateway } from "../../agent/gateway.ts";
import { type FakeModel, startFakeModel } from "../../scripts/fake-model.ts";

let dir: string;
let fake: FakeModel;
let gateway: ModelGateway;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "occ-gw-"));
  fake = startFakeModel({
    apiKey: "sk-platform-secret",
    scenarios: [{ steps: [{ text: "hello from upstream" }] }],
  });
  gateway = new ModelGateway(join(dir, "gateway.sock"));
  await gateway.start();
});
afterAll(async () => {
  await gateway.close();
  await fake.close();
  rmSync(dir, { recursive: true, force: true });
});

const call = (token: string, body: Record<string, unknown>) =>
  fetch("http://sandbox/v1/chat/completions", {
    unix: gateway.socketPath,
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    body: JSON.stringify(body),
  } as RequestInit);

const prompt = {
  model: "whatever-the-sandbox-says",
  messages: [{ role: "user", content: "hi" }],
  tools: [{ type: "function", function: { name: "bash" } }],
};

test("a run token streams through; the upstream sees the platform's key and model, never the token", async () => {
  const token = gateway.grant("run_1", {
    baseURL: fake.baseURL,
    apiKey: "sk-platform-secret",
    model: "real-model",
  });
  const res = await call(token, { ...prompt, stream: true });
  expect(res.status).toBe(200);
  const text = (await res.text())
    .split("\n\n")
    .filter((l) => l.startsWith("data: {"))
    .map((l) => JSON.parse(l.slice(6)).choices[0]?.delta?.content ?? "")
    .join("");
  expect(text).toBe("hello from upstream");
  const seen = fake.requests.at(-1)!;
  expect(seen.headers.authorization).toBe("Bearer sk-platform-secret");
  expect(seen.body.model).toBe("real-model");
  expect(JSON.stringify(seen)).not.toContain(token);
  expect(gateway.usage(token)).toEqual({
    requests: 1,
    promptTokens: 100,
    completionTokens: 20,
    totalTokens: 120,
  });

  // Non-streaming answers are counted too; revoking returns the total and ends access.
  expect((await call(token, { ...prompt, stream: false })).status).toBe(200);
  expect(gateway.revoke(token)).toEqual({
    requests: 2,
    promptTokens: 200,
    completionTokens: 40,
    totalTokens: 240,
  });
  expect((await call(token, prompt)).status).toBe(401);
});

test("unknown tokens, other routes and exhausted budgets are refused", async () => {
  expect((await call("sk-platform-secret", prompt)).status).toBe(401); // a real key is not a run token
  const token = gateway.grant(
    "run_2",
    { baseURL: fake.baseURL, apiKey: "sk-platform-secret", model: "m" },
    { maxRequests: 1 },
  );
  const models = await fetch("http://sandbox/v1/models", {
    unix: gateway.socketPath,
    headers: { authorization: `Bearer ${token}` },
  } as RequestInit);
  expect(models.status).toBe(404);
  expect((await call(token, { ...prompt, stream: false })).status).toBe(200);
  const over = await call(token, { ...prompt, stream: false });
  expect(over.status).toBe(429);
  expect((await over.json()).error.type).toBe("quota_exceeded");
});

test("an unreachable upstream is a 502 with a clear message, not a hang", async () => {
  const token = gateway.grant("run_3", { baseURL: "http://127.0.0.1:9/v1", model: "m" });
  const res = await call(token, prompt);
  expect(res.status).toBe(502);
  expect((await res.json()).error.type).toBe("gateway_error");
});
