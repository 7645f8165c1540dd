// The live session page (/app) in a real headless Chromium (Debian's `chromium`, driven by
// playwright-core; no browser is downloaded) against the real server on an ephemeral port: a user
// registers, creates a session, runs commands and watches their output stream in, forks and rolls
// back from the page, and sees another client's fork and presence arrive live. The tree's labels are
// measured in the browser (getBBox), on the page and on the server's tree.svg.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type BrowserContext, chromium, type Page } from "playwright-core";
import { denoBinary, type ServerProcess, startServerProcess } from "../../scripts/lib/server-process.ts";
import { startAgentHarness } from "../utils/agent.ts";
import { agentUnavailable, testUnless } from "../utils/isolation.ts";
import { startTestServer, type TestServer } from "../utils/server.ts";

// Debian's package (Fedora's binary is chromium-browser), as scripts/system-deps.mjs installs it.
const CHROMIUM = Bun.which("chromium") ?? Bun.which("chromium-browser");
const chromiumMissing = CHROMIUM
  ? null
  : "chromium is not installed (npm test installs it through scripts/system-deps.mjs where it can)";
const it = testUnless(chromiumMissing);
const itWithAgent = testUnless(chromiumMissing ?? agentUnavailable);
const itOnDeno = testUnless(
  chromiumMissing ??
    (denoBinary() ? null : "deno is not installed (it is an npm dependency: run npm install)"),
);

let server: TestServer;
let browser: BrowserContext;
let profile: string;
let page: Page;
/** Errors the page logged (a CSP violation, an uncaught exception…): none expected. */
const pageErrors: string[] = [];

beforeAll(async () => {
  server = await startTestServer();
  if (chromiumMissing) return;
  profile = mkdtempSync(join(tmpdir(), "occ-chromium-"));
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM!,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  page = await newPage();
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await server?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

async function newPage(): Promise<Page> {
  const p = await browser.newPage();
  p.on("pageerror", (error) => pageErrors.push(`pageerror: ${error.message}`));
  p.on("console", (message) => {
    // Failed loads are recorded with their address below.
    if (message.type() === "error" && !message.text().startsWith("Failed to load resource"))
      pageErrors.push(`console: ${message.text()}`);
  });
  p.on("response", (response) => {
    // A bare SVG document (tree.svg) has no icon link, so Chromium asks for /favicon.ico.
    if (response.status() >= 400 && new URL(response.url()).pathname !== "/favicon.ico")
      pageErrors.push(`${response.status()} ${response.url()}`);
  });
  return p;
}

/** Registers in the page; returns the email. */
async function register(p: Page, base: string): Promise<string> {
  const email = `page-${crypto.randomUUID().slice(0, 8)}@example.com`;
  await p.goto(`${base}/app`);
  await p.getByLabel("Email").fill(email);
  await p.getByLabel("Password").fill("correct horse battery");
  await p.getByRole("button", { name: "Register" }).click();
  await p.getByRole("heading", { name: "Sessions" }).waitFor();
  return email;
}

/** Creates a session in the page and waits until it is open and live; returns its id. */
async function createSession(p: Page, title: string): Promise<string> {
  await p.getByLabel("Title").fill(title);
  await p.getByRole("button", { name: "Create session" }).click();
  await p.locator("#session-title").filter({ hasText: title }).waitFor();
  await p.locator("#connection[data-state=live]").waitFor();
  await p.locator("svg.tree g.snapshot").first().waitFor();
  return decodeURIComponent(new URL(p.url()).hash.replace("#/sessions/", ""));
}

const tokenOf = (p: Page) => p.evaluate(() => sessionStorage.getItem("opencode.cloud.token")!);

const treeState = (p: Page) =>
  p.evaluate(() => ({
    nodes: [...document.querySelectorAll("svg.tree g.snapshot")].map((g) => g.getAttribute("data-id")!),
    labels: [...document.querySelectorAll("svg.tree g.branch")].map((g) => g.textContent),
  }));

/**
 * Every label (its pill and its text, as the browser laid them out) against every node's circle and
 * every other label, and each text inside its pill. Runs in the page or in a loaded tree.svg.
 */
function measureOverlaps(): string[] {
  type Box = { x: number; y: number; width: number; height: number };
  const hit = (a: Box, b: Box) =>
    a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height;
  const inside = (a: Box, b: Box) =>
    a.x >= b.x && a.y >= b.y && a.x + a.width <= b.x + b.width && a.y + a.height <= b.y + b.height;
  const circles = [...document.querySelectorAll("g.snapshot circle")].map((c) => {
    const box = (c as SVGCircleElement).getBBox();
    // Grown by half the stroke, which is drawn outside the geometry.
    const half = Number.parseFloat(getComputedStyle(c).strokeWidth || "0") / 2;
    return { x: box.x - half, y: box.y - half, width: box.width + 2 * half, height: box.height + 2 * half };
  });
  const labels = [...document.querySelectorAll("g.branch")].map((g) => ({
    name: g.querySelector("text")!.textContent!,
    pill: (g.querySelector("rect") as SVGRectElement).getBBox(),
    text: (g.querySelector("text") as SVGTextElement).getBBox(),
  }));
  const found: string[] = [];
  for (const l of labels) {
    if (l.text.width === 0) found.push(`${l.name}: text not rendered`);
    if (!inside(l.text, l.pill)) found.push(`${l.name}: text spills out of its pill`);
    for (const c of circles)
      if (hit(l.pill, c) || hit(l.text, c)) found.push(`${l.name} covers a node at ${c.x},${c.y}`);
    for (const o of labels) if (o !== l && hit(l.pill, o.pill)) found.push(`${l.name} overlaps ${o.name}`);
  }
  if (labels.length === 0) found.push("no labels drawn");
  return found;
}

it("a user registers, creates a session and watches a command's output stream in, escaped", async () => {
  await register(page, server.url);
  const title = `<img src=x onerror="window.pwned=1"> demo & co`;
  await createSession(page, title);
  expect(await page.locator("#session-title").textContent()).toBe(title);
  expect(await page.locator("main img").count()).toBe(0);

  // Record every state of the output pane, to see it grow chunk by chunk (not arrive all at once).
  await page.evaluate(() => {
    const seen: string[] = [];
    (window as unknown as { outputStates: string[] }).outputStates = seen;
    const pane = document.getElementById("run-output")!;
    new MutationObserver(() => seen.push(pane.textContent ?? "")).observe(pane, {
      childList: true,
      characterData: true,
      subtree: true,
    });
  });
  await page.getByLabel("Command").fill('for i in 1 2 3; do echo "<b>line $i</b>"; sleep 0.5; done');
  await page.getByRole("button", { name: "Run command" }).click();
  await page.locator("#run-state").filter({ hasText: "Finished: SUCCEEDED (exit 0)" }).waitFor();
  const output = await page.locator("#run-output").textContent();
  expect(output).toBe("<b>line 1</b>\n<b>line 2</b>\n<b>line 3</b>\n");
  expect(await page.locator("#run-output b").count()).toBe(0); // text, never markup
  const states = await page.evaluate(() => (window as unknown as { outputStates: string[] }).outputStates);
  expect(states.some((s) => s.includes("line 1") && !s.includes("line 3"))).toBe(true);

  // The run's snapshot joined the tree, and the run is listed.
  await page.waitForFunction(() => document.querySelectorAll("svg.tree g.snapshot").length === 2);
  expect(await page.locator("#run-list li").first().textContent()).toContain("SUCCEEDED");

  // A failing command: its run is listed as failed and its snapshot marked in the tree.
  await page.getByLabel("Command").fill("echo oops >&2; exit 3");
  await page.getByRole("button", { name: "Run command" }).click();
  await page.locator("#run-state").filter({ hasText: "Finished: FAILED (exit 3)" }).waitFor();
  expect(await page.locator("#run-output .stderr").textContent()).toBe("oops\n");
  await page.locator("svg.tree g.snapshot.failed").waitFor();
  expect(await page.locator("svg.tree g.snapshot.failed").getAttribute("aria-label")).toContain(
    "its run failed",
  );
  await page.locator("#run-list li.failed").first().waitFor();
  expect(pageErrors).toEqual([]);
}, 60_000);

it("forks and rolls back from the page; another client's fork, run and presence arrive live", async () => {
  const sessionId = decodeURIComponent(new URL(page.url()).hash.replace("#/sessions/", ""));
  const token = await tokenOf(page);
  const state = async () =>
    (
      await server.gql(
        `query($s: ID!) { session(id: $s) { rootSnapshot { id } mainBranch { id head { id } }
          branches { id name head { id parentId } } } }`,
        { s: sessionId },
        token,
      )
    ).data!.session;
  const before = await state();
  const mainHead = before.mainBranch.head.id;

  // Fork right after main's head (the case whose label used to cover the child), from the page.
  await page.locator(`svg.tree g.snapshot[data-id="${mainHead}"]`).click();
  await page.getByLabel("New branch name").fill("feature");
  await page.getByRole("button", { name: "Fork from the selected snapshot" }).click();
  await page.locator("svg.tree g.branch", { hasText: "feature" }).waitFor();
  const feature = (await state()).branches.find((b: { name: string }) => b.name === "feature");
  expect(feature.head.id).toBe(mainHead);
  await page.waitForFunction(
    (id) => (document.getElementById("branch-select") as HTMLSelectElement).value === id,
    feature.id,
  );

  // A run on the fork: its snapshot is main head's first child.
  await page.getByLabel("Command").fill("echo feature > f.txt");
  await page.getByRole("button", { name: "Run command" }).click();
  await page.locator("#run-state").filter({ hasText: "Finished: SUCCEEDED" }).waitFor();
  const afterRun = (await state()).branches.find((b: { id: string }) => b.id === feature.id);
  expect(afterRun.head.parentId).toBe(mainHead);
  await page.locator(`svg.tree g.snapshot[data-id="${afterRun.head.id}"]`).waitFor();
  expect(await page.evaluate(measureOverlaps)).toEqual([]);

  // Another member, through the API: their fork and run appear in the page without a reload.
  const other = await server.signUp();
  await server.gql(
    `mutation($s: ID!, $e: String!) { shareSession(sessionId: $s, email: $e, role: EDITOR) { role } }`,
    { s: sessionId, e: other.email },
    token,
  );
  const fork = await server.gql(
    `mutation($s: ID!) { fork(snapshotId: $s, name: "api-fork") { id } }`,
    { s: before.rootSnapshot.id },
    other.token,
  );
  await page.locator("svg.tree g.branch", { hasText: "api-fork" }).waitFor();
  const nodesBefore = (await treeState(page)).nodes.length;
  await server.gql(
    `mutation($b: ID!) { exec(branchId: $b, command: "echo api > api.txt") { id } }`,
    { b: fork.data!.fork.id },
    other.token,
  );
  await page.waitForFunction(
    (n) => document.querySelectorAll("svg.tree g.snapshot").length === n + 1,
    nodesBefore,
  );
  await page.locator("#run-list li", { hasText: "echo api > api.txt" }).waitFor();

  // Their presence: the page lists itself, then the other member as soon as they announce.
  await page.locator("#presence-list li", { hasText: "(you)" }).waitFor();
  await server.gql(
    `mutation($s: ID!, $b: ID) { announcePresence(sessionId: $s, branchId: $b, color: "#ff0000") { key } }`,
    { s: sessionId, b: fork.data!.fork.id },
    other.token,
  );
  const theirs = page.locator("#presence-list li", { hasText: other.email });
  await theirs.waitFor();
  expect(await theirs.textContent()).toContain("on api-fork");

  // Roll the fork back to where it started, from the page (the snapshot picked with the keyboard):
  // its label moves back to main's head.
  await page.locator(`svg.tree g.snapshot[data-id="${mainHead}"]`).focus();
  await page.keyboard.press("Enter");
  await page.locator(`svg.tree g.snapshot.selected[data-id="${mainHead}"]`).waitFor();
  await page.getByRole("button", { name: "Roll back feature to the selected snapshot" }).click();
  await page.waitForFunction(
    ({ label, node }) => {
      const rect = document.querySelector(
        `svg.tree g.branch[data-id="${label}"] rect`,
      ) as SVGRectElement | null;
      const circle = document.querySelector(
        `svg.tree g.snapshot[data-id="${node}"] circle`,
      ) as SVGCircleElement;
      return (
        rect !== null && rect.y.baseVal.value + rect.height.baseVal.value / 2 === circle.cy.baseVal.value
      );
    },
    { label: feature.id, node: mainHead },
  );
  expect((await state()).branches.find((b: { id: string }) => b.id === feature.id).head.id).toBe(mainHead);

  // Promote it: the main label (and the highlighted line) moves to the fork.
  await page.getByRole("button", { name: "Make feature main" }).click();
  await page.locator(`svg.tree g.branch.main[data-id="${feature.id}"]`).waitFor();
  expect((await state()).mainBranch.id).toBe(feature.id);
  expect(pageErrors).toEqual([]);
}, 60_000);

it("tree labels never overlap a node or each other, on the page and in tree.svg, as Chromium lays them out", async () => {
  const sessionId = decodeURIComponent(new URL(page.url()).hash.replace("#/sessions/", ""));
  const token = await tokenOf(page);
  // More heads on one snapshot that has children, with long names.
  const session = (
    await server.gql(
      `query($s: ID!) { session(id: $s) { mainBranch { head { id } } } }`,
      { s: sessionId },
      token,
    )
  ).data!.session;
  for (const name of ["x".repeat(64), "fix/a-long-branch-name"])
    await server.gql(
      `mutation($s: ID!, $n: String) { fork(snapshotId: $s, name: $n) { id } }`,
      { s: session.mainBranch.head.id, n: name },
      token,
    );
  await page.locator("svg.tree g.branch", { hasText: "fix/a-long-branch-name" }).waitFor();
  expect((await treeState(page)).labels.length).toBeGreaterThanOrEqual(5);
  expect(await page.evaluate(measureOverlaps)).toEqual([]);

  const svgPage = await newPage();
  const res = await svgPage.goto(`${server.url}/sessions/${sessionId}/tree.svg?token=${token}`);
  expect(res?.status()).toBe(200);
  expect(await svgPage.evaluate(() => document.querySelectorAll("g.branch").length)).toBeGreaterThanOrEqual(
    5,
  );
  expect(await svgPage.evaluate(measureOverlaps)).toEqual([]);
  await svgPage.close();
}, 60_000);

it("a history longer than a page loads page by page, newest back, and opens from a link", async () => {
  const token = await tokenOf(page);
  const s = (
    await server.gql(
      `mutation { createSession(input: { title: "long" }) { id mainBranch { id } } }`,
      {},
      token,
    )
  ).data!.createSession;
  for (let i = 0; i < 130; i++) {
    const res = await server.gql(
      `mutation($b: ID!, $c: String!) { writeFile(branchId: $b, path: "n.txt", content: $c) { id } }`,
      { b: s.mainBranch.id, c: String(i) },
      token,
    );
    expect(res.errors).toBeUndefined();
  }
  await page.goto(`${server.url}/app#/sessions/${encodeURIComponent(s.id)}`);
  await page.locator("#session-title").filter({ hasText: "long" }).waitFor();
  await page.waitForFunction(() => document.querySelectorAll("svg.tree g.snapshot").length === 131);
  // One line of history: every node on one row, oldest on the left, main's label after the newest.
  const rows = await page.evaluate(() => [
    ...new Set([...document.querySelectorAll("svg.tree g.snapshot circle")].map((c) => c.getAttribute("cy"))),
  ]);
  expect(rows).toHaveLength(1);
  expect(await page.evaluate(measureOverlaps)).toEqual([]);
  expect(pageErrors).toEqual([]);
}, 60_000);

it("the tree view labels explored branches with their scores and marks failed runs (in the browser)", async () => {
  const p = await newPage();
  try {
    await p.goto(`${server.url}/app`);
    await p.evaluate(async () => {
      // The page's own module, as the page loads it (a string, so TypeScript does not resolve it).
      const { drawTree } = await import(String("/app/tree-view.js"));
      const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
      svg.setAttribute("class", "tree");
      document.body.append(svg);
      const snap = (id: string, parentId: string | null, status?: string) => ({
        id,
        parentId,
        origin: "RUN",
        label: null,
        fileCount: 1,
        createdAt: new Date().toISOString(),
        createdBy: status ? { id: `run_${id}`, status } : null,
      });
      const branch = (id: string, name: string, head: string) => ({
        id,
        name,
        isMain: id === "m",
        head: { id: head },
      });
      drawTree(svg, {
        snapshots: [snap("a", null), snap("b", "a"), snap("c", "a", "FAILED"), snap("d", "a")],
        branches: [branch("m", "main", "a"), branch("x", "cand-1", "b"), branch("y", "cand-2", "c")],
        mainBranchId: "m",
        scores: new Map([
          ["x", { score: 0.75, passed: true }],
          ["y", { score: null, passed: false }],
        ]),
        selectedSnapshotId: null,
        selectedBranchId: null,
        onSelectSnapshot: () => {},
        onSelectBranch: () => {},
      });
    });
    const labels = await p.evaluate(() =>
      [...document.querySelectorAll("svg.tree g.branch")].map((g) => g.textContent),
    );
    expect(labels.sort()).toEqual(["cand-1 · 0.75", "cand-2 · failed", "main"]);
    expect(await p.locator("svg.tree g.snapshot.failed").getAttribute("data-id")).toBe("c");
    expect(await p.evaluate(measureOverlaps)).toEqual([]);
  } finally {
    await p.close();
  }
  expect(pageErrors).toEqual([]);
});

test("serves only the page's own files and graphql-ws's browser client, with a strict content policy", async () => {
  const html = await fetch(`${server.url}/app`);
  expect(html.status).toBe(200);
  expect(html.headers.get("content-type")).toStartWith("text/html");
  expect(html.headers.get("content-security-policy")).toContain("script-src 'self'");
  const client = await fetch(`${server.url}/app/vendor/graphql-ws/client.js`);
  expect(client.headers.get("content-type")).toStartWith("text/javascript");
  for (const path of [
    "/app/vendor/graphql-ws/index.js",
    "/app/tree-layout.d.ts",
    "/app/../api/config.ts",
    "/app/%2e%2e/package.json",
    "/app/vendor/graphql-ws/../../package.json",
  ]) {
    const res = await fetch(`${server.url}${path}`);
    expect({ path, status: res.status }).toEqual({ path, status: 404 });
    expect((await res.json()).errors[0].extensions.code).toBe("NOT_FOUND");
  }
});

/** A server whose agent answers from the scripted fake model, and a page signed in to a new session. */
async function agentPage(title: string) {
  const harness = await startAgentHarness([
    { match: "say hello", steps: [{ text: "Hello from the agent, <b>escaped</b>." }] },
    {
      match: "strategy good",
      steps: [
        { tool: "write", args: { filePath: "/workspace/score.txt", content: "0.75\n" } },
        { text: "Done." },
      ],
    },
    { match: "strategy bad", steps: [{ text: "Gave up." }] },
  ]);
  const p = await newPage();
  await register(p, harness.server.url);
  const sessionId = await createSession(p, title);
  return {
    p,
    harness,
    sessionId,
    close: async () => {
      await p.close();
      await harness.close();
    },
  };
}

itWithAgent(
  "a prompt from the page streams the agent's answer and its events, escaped",
  async () => {
    const { p, close } = await agentPage("agent");
    try {
      await p.getByLabel("Prompt for the agent").fill("say hello");
      await p.getByRole("button", { name: "Send prompt" }).click();
      await p.locator("#run-state").filter({ hasText: "Finished: SUCCEEDED" }).waitFor({ timeout: 90_000 });
      expect(await p.locator("#run-output").textContent()).toContain("Hello from the agent, <b>escaped</b>.");
      await p
        .locator("#agent-events li.text", { hasText: "Hello from the agent, <b>escaped</b>." })
        .waitFor();
      expect(await p.locator("#agent-events b, #run-output b").count()).toBe(0);
      expect(pageErrors).toEqual([]);
    } finally {
      await close();
    }
  },
  120_000,
);

itWithAgent(
  "explored branches are labelled with their scores, live; a failed score is marked",
  async () => {
    const { p, harness, sessionId, close } = await agentPage("explore");
    try {
      // An exploration started by the API: one candidate scores 0.75, the other's score command fails.
      const token = await tokenOf(p);
      const head = (
        await harness.server.gql(
          `query($s: ID!) { session(id: $s) { mainBranch { head { id } } } }`,
          { s: sessionId },
          token,
        )
      ).data!.session.mainBranch.head.id;
      const explore = await harness.server.gql(
        `mutation($s: ID!) { explore(input: { snapshotId: $s, prompts: ["use strategy good", "use strategy bad"],
        scoreCommand: "cat score.txt", parallelism: 2 }) { id } }`,
        { s: head },
        token,
      );
      expect(explore.errors).toBeUndefined();
      // Both labels, unless the exploration itself fails first (then say why rather than time out).
      let done = false;
      const failed = (async () => {
        while (!done) {
          await Bun.sleep(1000);
          const e = (
            await harness.server.gql(
              `query($id: ID!) { exploration(id: $id) { status error } }`,
              { id: explore.data!.explore.id },
              token,
            )
          ).data?.exploration;
          if (!done && e?.status === "FAILED") throw new Error(`the exploration failed: ${e.error}`);
        }
      })();
      await Promise.race([
        Promise.all([
          p.locator("svg.tree g.branch", { hasText: "· 0.75" }).waitFor({ timeout: 120_000 }),
          p.locator("svg.tree g.branch", { hasText: "· failed" }).waitFor({ timeout: 120_000 }),
        ]),
        failed,
      ]).finally(() => {
        done = true;
      });
      await failed;
      expect(await p.evaluate(measureOverlaps)).toEqual([]);
      expect(pageErrors).toEqual([]);
    } finally {
      await close();
    }
  },
  240_000,
);

itOnDeno(
  "the same page works against the server on Deno",
  async () => {
    let deno: ServerProcess | undefined;
    const p = await newPage();
    try {
      deno = await startServerProcess({ NODE_ENV: "test", LOG_LEVEL: "warn" }, { runtime: "deno" });
      await register(p, deno.url);
      await createSession(p, "on deno");
      await p.getByLabel("Command").fill("echo from deno");
      await p.getByRole("button", { name: "Run command" }).click();
      await p.locator("#run-state").filter({ hasText: "Finished: SUCCEEDED" }).waitFor();
      expect(await p.locator("#run-output").textContent()).toBe("from deno\n");
      expect(pageErrors).toEqual([]);
    } finally {
      await p.close();
      await deno?.stop();
    }
  },
  60_000,
);
