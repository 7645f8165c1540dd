// The model gateway over its real unix socket, in front of the fake model: per-run tokens, real
// credentials added here, streaming passed through, usage counted from the provider's stream.
// Users' endpoints go through the outbound policy at every request (pinned to the checked address),
// redirects are not followed and upstream error bodies never come back.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ModelGateway } from "../../agent/gateway.ts";
import { OutboundPolicy } from "../../sandbox/outbound-policy.ts";
import { type FakeModel, startFakeModel } from "../../scripts/fake-model.ts";

let dir: string;
let fake: FakeModel;
let gateway: ModelGateway;
const logged: { message: string; fields?: Record<string, unknown> }[] = [];
/** An "internal" loopback service that the policy does not allow; it counts every hit. */
let internal: ReturnType<typeof Bun.serve>;
let internalHits = 0;
/** An allowed upstream that answers errors carrying a secret, or redirects to the internal service. */
let tricky: ReturnType<typeof Bun.serve>;
const SECRET = "s3cr3t-admin-token-4242";

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "occ-gw-"));
  fake = startFakeModel({
    apiKey: "sk-platform-secret",
    scenarios: [{ steps: [{ text: "hello from upstream" }] }],
  });
  internal = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch: () => {
      internalHits++;
      return Response.json({ admin: true, token: SECRET });
    },
  });
  tricky = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch: (req) =>
      new URL(req.url).pathname.startsWith("/redirect/")
        ? Response.redirect(`http://127.0.0.1:${internal.port}/admin/chat/completions`, 307)
        : new Response(`{"error":"internal failure, token=${SECRET}"}`, { status: 500 }),
  });
  // The fake model and the tricky upstream are allowed by port; the internal service is not.
  const outbound = new OutboundPolicy(
    {
      allowPrivate: false,
      allowHosts: [
        new URL(fake.url).host,
        `127.0.0.1:${tricky.port}`,
        `model.example:${new URL(fake.url).port}`,
      ],
    },
    async (name) => (name === "model.example" ? [{ address: "127.0.0.1", family: 4 }] : []),
  );
  gateway = new ModelGateway(
    join(dir, "gateway.sock"),
    (message, fields) => logged.push({ message, fields }),
    {
      outbound,
    },
  );
  await gateway.start();
});
afterAll(async () => {
  await gateway.close();
  await fake.close();
  internal.stop(true);
  tricky.stop(true);
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
  const token = gateway.grant("run_3", { baseURL: "http://127.0.0.1:9/v1", model: "m", trusted: true });
  const res = await call(token, prompt);
  expect(res.status).toBe(502);
  expect((await res.json()).error.type).toBe("gateway_error");
});

test("a user's endpoint the policy refuses is never contacted, and looks like an unreachable one", async () => {
  const answers: string[] = [];
  for (const baseURL of [
    `http://127.0.0.1:${internal.port}/admin`,
    `http://[::ffff:127.0.0.1]:${internal.port}/admin`,
    `http://2130706433:${internal.port}/admin`,
    `http://localhost:${internal.port}/admin`,
    "http://169.254.169.254/latest",
    "http://no-such-name.invalid/v1",
  ]) {
    const res = await call(gateway.grant("run_4", { baseURL, model: "m" }), prompt);
    expect(res.status).toBe(502);
    answers.push(await res.text());
  }
  // The platform's own (trusted) endpoint that is down answers exactly the same.
  const down = await call(
    gateway.grant("run_4", { baseURL: "http://127.0.0.1:9/v1", model: "m", trusted: true }),
    prompt,
  );
  answers.push(await down.text());
  expect(new Set(answers).size).toBe(1);
  expect(internalHits).toBe(0);
});

test("the connection goes to the address the policy checked (a pinned lookup, not a second DNS query)", async () => {
  // model.example resolves only through the policy's resolver; the system's DNS has never heard of it.
  const token = gateway.grant("run_5", {
    baseURL: `http://model.example:${new URL(fake.url).port}/v1`,
    apiKey: "sk-platform-secret",
    model: "m",
  });
  const res = await call(token, { ...prompt, stream: false });
  expect(res.status).toBe(200);
  expect(fake.requests.at(-1)!.headers.host).toBe(`model.example:${new URL(fake.url).port}`);
});

test("upstream error bodies are logged, not returned; redirects are not followed", async () => {
  const failing = await call(
    gateway.grant("run_6", { baseURL: `http://127.0.0.1:${tricky.port}/v1`, model: "m" }),
    prompt,
  );
  expect(failing.status).toBe(500);
  const failingText = await failing.text();
  expect(failingText).not.toContain(SECRET);
  expect(JSON.parse(failingText).error).toMatchObject({ type: "upstream_error", status: 500 });
  expect(JSON.stringify(logged)).toContain(SECRET); // the operator can still see what happened

  const redirected = await call(
    gateway.grant("run_7", { baseURL: `http://127.0.0.1:${tricky.port}/redirect/v1`, model: "m" }),
    prompt,
  );
  expect(redirected.status).toBe(502);
  const redirectedText = await redirected.text();
  expect(JSON.parse(redirectedText).error).toMatchObject({ type: "upstream_error", status: 307 });
  expect(redirectedText).not.toContain(String(internal.port));
  expect(internalHits).toBe(0);
});

test("a live agent's token outlives runs: refused between runs, each run's usage its own, never over TCP", async () => {
  const upstream = { baseURL: fake.baseURL, apiKey: "sk-platform-secret", model: "real-model" };
  const token = gateway.grantServer();
  // No run attached: refused, and nothing reaches the model.
  const before = fake.requests.length;
  const idle = await call(token, { ...prompt, stream: false });
  expect(idle.status).toBe(401);
  expect((await idle.json()).error.message).toContain("No run is in progress");
  expect(fake.requests.length).toBe(before);

  gateway.attach(token, "run_a", upstream);
  expect((await call(token, { ...prompt, stream: false })).status).toBe(200);
  expect((await call(token, { ...prompt, stream: true })).status).toBe(200);
  expect(gateway.detach(token)).toMatchObject({ requests: 2, totalTokens: 240 });
  expect((await call(token, { ...prompt, stream: false })).status).toBe(401);

  // The next run counts from zero, on its own model.
  gateway.attach(token, "run_b", { ...upstream, model: "another-model" });
  expect((await call(token, { ...prompt, stream: false })).status).toBe(200);
  expect(fake.requests.at(-1)!.body.model).toBe("another-model");
  expect(gateway.detach(token)).toMatchObject({ requests: 1, totalTokens: 120 });

  // The TCP listener (for microVMs) does not take it, attached or not.
  const port = await gateway.listenTcp("127.0.0.1", 0);
  gateway.attach(token, "run_c", upstream);
  const overTcp = await fetch(`http://127.0.0.1:${port}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    body: JSON.stringify({ ...prompt, stream: false }),
  });
  expect(overTcp.status).toBe(401);
  expect(gateway.detach(token)).toMatchObject({ requests: 0 });
  gateway.revoke(token);
});
