// The real opencode binary completes a turn offline against the scripted fake model: it writes a
// file, runs a command, streams the answer. (Runs on the host here; in-sandbox runs come with the agent.)
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { offlineEnv, opencodeBinary, projectConfig } from "../../agent/opencode-binary.ts";
import { defaultScenarios, type FakeModel, startFakeModel } from "../../scripts/fake-model.ts";

const bin = opencodeBinary();
let root: string;
let fake: FakeModel;

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), "occ-opencode-"));
});
afterAll(async () => {
  await fake?.close();
  rmSync(root, { recursive: true, force: true });
});

test.skipIf(!bin)(
  "opencode run: write -> bash -> answer, entirely offline",
  async () => {
    const project = join(root, "project");
    mkdirSync(project);
    fake = startFakeModel({ scenarios: defaultScenarios(project), apiKey: "sk-per-run" });
    writeFileSync(join(project, "opencode.json"), projectConfig(fake.baseURL, "sk-per-run"));

    const proc = Bun.spawn(
      [bin!, "run", "--format", "json", "--title", "offline test", "please write hello.txt"],
      {
        cwd: project,
        env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...offlineEnv(join(root, "state")) },
        stdout: "pipe",
        stderr: "pipe",
      },
    );
    const timer = setTimeout(() => proc.kill("SIGKILL"), 90_000);
    const [stdout, stderr, code] = await Promise.all([
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
      proc.exited,
    ]);
    clearTimeout(timer);
    expect(code, stderr.slice(-2000)).toBe(0);

    expect(readFileSync(join(project, "hello.txt"), "utf8")).toBe("Hello from the fake model\n");
    const events = stdout
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l));
    const tools = events.filter((e) => e.type === "tool_use").map((e) => e.part.tool);
    expect(tools).toEqual(["write", "bash"]);
    const bash = events.find((e) => e.type === "tool_use" && e.part.tool === "bash");
    expect(bash.part.state.output).toContain("Hello from the fake model");
    expect(
      events
        .filter((e) => e.type === "text")
        .map((e) => e.part.text)
        .join(""),
    ).toContain("Done.");

    // The model saw the whole conversation: its last request carries both tool results.
    const turns = fake.requests.filter((r) => (r.body.tools?.length ?? 0) > 0);
    expect(turns.length).toBe(3);
    expect(turns[2]!.body.messages!.filter((m) => m.role === "tool").length).toBe(2);
    expect(turns[0]!.headers.authorization).toBe("Bearer sk-per-run");
  },
  120_000,
);
