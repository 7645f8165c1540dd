// The real opencode inside a local sandbox (bubblewrap, no network) reaches the fake model only
// through the gateway; its conversation lives in the workspace, so a fork continues it and a reset
// to an earlier snapshot forgets it.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ModelGateway } from "../../agent/gateway.ts";
import { opencodeTurn } from "../../agent/opencode-command.ts";
import { LocalProvider } from "../../sandbox/local/provider.ts";
import { type FakeModel, startFakeModel } from "../../scripts/fake-model.ts";
import { agentUnavailable, skipBecause } from "../utils/isolation.ts";

const dir = mkdtempSync(join(tmpdir(), "occ-agent-sbx-"));
const provider = await new LocalProvider({ dir: join(dir, "sbx") }).init();
let fake: FakeModel;
let gateway: ModelGateway;

beforeAll(async () => {
  fake = startFakeModel({
    apiKey: "sk-platform",
    scenarios: [
      {
        match: "first",
        steps: [
          { tool: "write", args: { filePath: "/workspace/hello.txt", content: "hi\n" } },
          {
            tool: "bash",
            args: { command: "cat hello.txt; env | grep -c sk-platform", description: "check" },
          },
          { text: "first done" },
        ],
      },
      { match: "second", steps: [{ text: "second done" }] },
    ],
  });
  gateway = new ModelGateway(join(dir, "gateway.sock"));
  await gateway.start();
});
afterAll(async () => {
  await provider.close();
  await gateway?.close();
  await fake?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function turn(sandbox: string, prompt: string) {
  // The platform's model (operator config): trusted, so its loopback address is not refused.
  const token = gateway.grant("run", {
    baseURL: fake.baseURL,
    apiKey: "sk-platform",
    model: "fake-model",
    trusted: true,
  });
  let out = "";
  const result = await provider.exec(sandbox, {
    ...opencodeTurn({ prompt, gatewaySocket: gateway.socketPath, token }),
    timeoutMs: 120_000,
    onOutput: (c) => {
      out += new TextDecoder().decode(c.data);
    },
  });
  const usage = gateway.revoke(token);
  const events = out
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l));
  return { result, events, usage, out };
}

/** User messages the model saw in its latest request. */
const usersSeen = () =>
  fake.requests
    .filter((r) => (r.body.tools?.length ?? 0) > 0)
    .at(-1)!
    .body.messages!.filter((m) => m.role === "user").length;

test.skipIf(skipBecause(agentUnavailable))(
  "a turn in the sandbox: tools run, the key never enters, the conversation forks and rolls back",
  async () => {
    const sbx = await provider.create({ kind: "empty" });
    const empty = await provider.snapshot(sbx);

    const first = await turn(sbx, "first task");
    expect(first.result.exitCode, first.out.slice(-1500)).toBe(0);
    // In order: write started and finished, bash started and finished, then the answer streamed, then done.
    const tools = first.events
      .filter((e) => e.type === "tool.started" || e.type === "tool.finished")
      .map((e) => `${e.type}:${e.tool}`);
    expect(tools).toEqual([
      "tool.started:write",
      "tool.finished:write",
      "tool.started:bash",
      "tool.finished:bash",
    ]);
    const bash = first.events.find((e) => e.type === "tool.finished" && e.tool === "bash");
    expect(bash.output).toContain("hi\n0"); // the file exists; no sk-platform in the sandbox env
    expect(bash.input.command).toContain("cat hello.txt");
    const deltas = first.events.filter((e) => e.type === "text.delta");
    expect(deltas.length).toBeGreaterThan(1);
    expect(deltas.map((e) => e.delta).join("")).toBe("first done");
    const lastTool = first.events.findLastIndex((e) => e.type === "tool.finished");
    expect(first.events.findIndex((e) => e.type === "text.delta")).toBeGreaterThan(lastTool);
    expect(first.events.filter((e) => e.type === "step.finished").length).toBe(3);
    expect(first.events.at(-1).type).toBe("done");
    expect(first.usage!.requests).toBe(3);
    expect(first.usage!.totalTokens).toBeGreaterThan(0);
    const afterFirst = await provider.snapshot(sbx);

    // Continue in the same sandbox: the model sees the earlier prompt.
    expect((await turn(sbx, "second task")).result.exitCode).toBe(0);
    expect(usersSeen()).toBe(2);

    // A fork of the snapshot taken after the first turn continues that conversation.
    const fork = await provider.fork(afterFirst.id);
    expect((await turn(fork, "second task, on the fork")).result.exitCode).toBe(0);
    expect(usersSeen()).toBe(2);

    // Rolled back to before the first turn, the agent has forgotten it.
    await provider.reset(fork, empty.id);
    expect((await turn(fork, "second task, after rollback")).result.exitCode).toBe(0);
    expect(usersSeen()).toBe(1);
    expect(await provider.readFile({ sandbox: fork }, "hello.txt")).toBeNull();
  },
  180_000,
);
