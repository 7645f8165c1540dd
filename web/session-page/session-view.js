// One session, live: its tree (from sessionEvents after the cursor read with it), runs and their
// output (runOutput), the selected branch's agent events (agentEvents), who is here (presence, and
// this page announcing itself), and the actions: exec, prompt, fork, roll back, promote.
import { request, subscribe } from "./api.js";
import { byId, h, time } from "./dom.js";
import { clearNotices, fail, say } from "./notices.js";
import * as Q from "./queries.js";
import { drawTree, FAILED_STATUSES } from "./tree-view.js";

/** Snapshots loaded at most (the newest); the tree says when older ones are left out. */
const MAX_SNAPSHOTS = 5000;
/** Characters of run output kept on screen, and agent events listed. */
const MAX_OUTPUT_CHARS = 2_000_000;
const MAX_AGENT_EVENTS = 300;
/** announcePresence lasts 30 s; renewed well within. */
const ANNOUNCE_EVERY_MS = 20_000;

/**
 * Shows the session; returns the function that stops every subscription and timer.
 * @param {string} sessionId
 * @param {{ onSignedOut: (error: unknown) => void }} hooks
 */
export function openSession(sessionId, hooks) {
  const ui = {
    section: byId("session"),
    title: byId("session-title"),
    meta: byId("session-meta"),
    tree: /** @type {SVGSVGElement} */ (/** @type {unknown} */ (byId("tree"))),
    treeNote: byId("tree-note"),
    selected: byId("selected-snapshot"),
    forkForm: /** @type {HTMLFormElement} */ (byId("fork-form")),
    rollback: /** @type {HTMLButtonElement} */ (byId("rollback")),
    branchSelect: /** @type {HTMLSelectElement} */ (byId("branch-select")),
    branchStatus: byId("branch-status"),
    promote: /** @type {HTMLButtonElement} */ (byId("promote")),
    execForm: /** @type {HTMLFormElement} */ (byId("exec-form")),
    promptForm: /** @type {HTMLFormElement} */ (byId("prompt-form")),
    runs: byId("run-list"),
    output: byId("run-output"),
    runState: byId("run-state"),
    agentEvents: byId("agent-events"),
    presence: byId("presence-list"),
  };

  /** @type {Map<string, import("./tree-view.js").Snapshot>} oldest first */
  const snapshots = new Map();
  let truncated = false;
  /** @type {any} the latest SESSION read */
  let session = null;
  /** @type {Map<string, any>} presence entries by key */
  const presence = new Map();
  let myPresenceKey = null;
  let selectedBranchId = null;
  /** The snapshot the user picked in the tree; until then, the selected branch's head. */
  let chosenSnapshotId = null;
  let selectedRunId = null;
  let closed = false;
  /** @type {(() => void)[]} */
  const stops = [];
  let stopRun = () => {};
  let stopAgent = () => {};
  /** Subscriptions to running explorations' progress, by id. */
  const explorations = new Map();

  const refresh = coalesced(async () => {
    const data = await request(Q.SESSION, { id: sessionId });
    if (closed) return;
    session = data.session;
    watchExplorations();
    presence.clear();
    for (const entry of session.presence) presence.set(entry.key, entry);
    if (!session.branches.some((/** @type {any} */ b) => b.id === selectedBranchId))
      selectBranch(session.mainBranch.id);
    else render();
  }, failOrSignOut);

  function render() {
    if (!session) return;
    ui.title.textContent = session.title;
    ui.meta.textContent = `Your role: ${session.viewerRole?.toLowerCase() ?? "none"}`;
    renderBranches();
    renderTree();
    renderRuns();
    renderPresence();
  }

  function renderTree() {
    /** @type {Map<string, import("./tree-view.js").Score>} */
    const scores = new Map();
    for (const exploration of session.explorations)
      for (const c of exploration.candidates) if (c.branch) scores.set(c.branch.id, c);
    drawTree(ui.tree, {
      snapshots: [...snapshots.values()],
      branches: session.branches,
      mainBranchId: session.mainBranch.id,
      scores,
      selectedSnapshotId: selectedSnapshot()?.id ?? null,
      selectedBranchId,
      onSelectSnapshot: (id) => {
        chosenSnapshotId = id;
        renderTree();
      },
      onSelectBranch: selectBranch,
    });
    ui.treeNote.textContent = `${snapshots.size} snapshot${snapshots.size === 1 ? "" : "s"}${
      truncated ? " (older snapshots are not shown)" : ""
    }. Select a snapshot to fork from it or roll the branch back to it.`;
    const snap = selectedSnapshot();
    ui.selected.textContent = snap
      ? `Selected: ${snap.origin.toLowerCase()} snapshot ${snap.id}${snap.label ? ` "${snap.label}"` : ""} (${time(snap.createdAt)})`
      : "No snapshot selected.";
    const branch = currentBranch();
    ui.rollback.textContent = `Roll back ${branch?.name ?? "the branch"} to the selected snapshot`;
    const canWrite = session.viewerRole === "OWNER" || session.viewerRole === "EDITOR";
    ui.rollback.disabled = !canWrite || !snap || !branch || branch.head.id === snap.id;
    /** @type {HTMLButtonElement} */ for (const el of ui.forkForm.elements) el.disabled = !canWrite || !snap;
  }

  function renderBranches() {
    const options = session.branches.map((/** @type {any} */ b) =>
      h(
        "option",
        { value: b.id, selected: b.id === selectedBranchId },
        b.isMain ? `${b.name} (main)` : b.name,
      ),
    );
    ui.branchSelect.replaceChildren(...options);
    const branch = currentBranch();
    ui.branchStatus.textContent = branch ? `Status: ${branch.status}` : "";
    const canWrite = session.viewerRole === "OWNER" || session.viewerRole === "EDITOR";
    for (const form of [ui.execForm, ui.promptForm])
      for (const el of form.elements) /** @type {HTMLButtonElement} */ (el).disabled = !canWrite;
    ui.promote.disabled = session.viewerRole !== "OWNER" || !branch || branch.isMain;
    ui.promote.textContent = branch?.isMain
      ? `${branch.name} is the main branch`
      : `Make ${branch?.name ?? "it"} main`;
  }

  function renderRuns() {
    const items = session.runs.nodes.map((/** @type {any} */ run) => {
      const failed = FAILED_STATUSES.has(run.status);
      const text = `${run.kind.toLowerCase()} ${run.input} · ${run.status}${
        run.exitCode !== null ? ` (exit ${run.exitCode})` : ""
      } · ${run.branch?.name ?? "deleted branch"} · ${time(run.createdAt)}`;
      return h(
        "li",
        { class: failed ? "failed" : null },
        h(
          "button",
          {
            type: "button",
            "aria-current": run.id === selectedRunId ? "true" : null,
            onclick: () => watchRun(run.id),
          },
          text,
        ),
      );
    });
    ui.runs.replaceChildren(...items);
  }

  function renderPresence() {
    const names = new Map(session?.branches.map((/** @type {any} */ b) => [b.id, b.name]) ?? []);
    const items = [...presence.values()].map((entry) => {
      const swatch = h("span", { class: "swatch", "aria-hidden": "true" });
      if (entry.color) swatch.style.backgroundColor = entry.color; // CSSOM: an invalid colour is ignored
      const who = !entry.user
        ? " · guest (share link)"
        : entry.user.email === entry.name
          ? ""
          : ` · ${entry.user.email}`;
      const where = entry.branchId && names.has(entry.branchId) ? ` on ${names.get(entry.branchId)}` : "";
      const you = entry.key === myPresenceKey ? " (you)" : "";
      return h("li", { "data-key": entry.key }, swatch, `${entry.name}${who}${where}${you}`);
    });
    ui.presence.replaceChildren(...items);
  }

  function selectedSnapshot() {
    return snapshots.get(chosenSnapshotId ?? currentBranch()?.head.id ?? "");
  }

  function currentBranch() {
    return session?.branches.find((/** @type {any} */ b) => b.id === selectedBranchId);
  }

  /** @param {string} branchId */
  function selectBranch(branchId) {
    const changed = branchId !== selectedBranchId;
    selectedBranchId = branchId;
    if (changed) chosenSnapshotId = null;
    render();
    if (!changed) return;
    watchAgent(branchId);
    announce();
  }

  // Scores arrive with exploration events (not session events): follow every running exploration.
  function watchExplorations() {
    for (const e of session.explorations) {
      if (e.status !== "RUNNING" || explorations.has(e.id)) continue;
      const stop = subscribe(Q.EXPLORATION, { id: e.id }, { next: () => refresh(), error: failOrSignOut });
      explorations.set(e.id, stop);
    }
  }

  /** @param {string} runId */
  function watchRun(runId) {
    stopRun();
    selectedRunId = runId;
    ui.output.replaceChildren();
    ui.runState.textContent = "Waiting for output…";
    let shown = 0;
    const append = (/** @type {string} */ text, /** @type {string | null} */ cls) => {
      if (shown >= MAX_OUTPUT_CHARS) return;
      const piece = text.slice(0, MAX_OUTPUT_CHARS - shown);
      shown += piece.length;
      ui.output.append(cls ? h("span", { class: cls }, piece) : piece);
      if (shown >= MAX_OUTPUT_CHARS)
        ui.output.append(h("span", { class: "note" }, "\n[more output not shown]"));
    };
    stopRun = subscribe(
      Q.RUN_OUTPUT,
      { run: runId },
      {
        next: ({ runOutput: e }) => {
          if (e.__typename === "RunOutputChunk") append(e.text, e.stream === "stderr" ? "stderr" : null);
          else if (e.__typename === "AgentTextDelta") append(e.text, null);
          else if (e.__typename === "AgentToolEvent")
            append(`\n[${e.tool} ${e.phase.toLowerCase()}]\n`, "note");
          else if (e.__typename === "AgentError") append(`\n${e.message}\n`, "stderr");
          else if (e.__typename === "RunTrailTruncated") append("\n[the stored record stops here]\n", "note");
          else if (e.__typename === "RunFinished")
            ui.runState.textContent = `Finished: ${e.status}${e.exitCode !== null ? ` (exit ${e.exitCode})` : ""}`;
          if (e.__typename !== "RunFinished") ui.runState.textContent = "Running…";
        },
        error: failOrSignOut,
      },
    );
    if (session) renderRuns();
  }

  /** @param {string} branchId */
  function watchAgent(branchId) {
    stopAgent();
    ui.agentEvents.replaceChildren();
    /** @type {Map<string, HTMLElement>} text parts as they grow */
    const parts = new Map();
    const add = (/** @type {HTMLElement} */ item) => {
      ui.agentEvents.append(item);
      while (ui.agentEvents.childElementCount > MAX_AGENT_EVENTS) ui.agentEvents.firstElementChild?.remove();
    };
    stopAgent = subscribe(
      Q.AGENT_EVENTS,
      { branch: branchId },
      {
        next: ({ agentEvents: e }) => {
          if (e.__typename === "AgentTextDelta") {
            const part = parts.get(e.partId);
            if (part) part.textContent += e.text;
            else {
              const item = h("li", { class: "text" }, e.text);
              parts.set(e.partId, item);
              add(item);
            }
            return;
          }
          const text =
            e.__typename === "AgentToolEvent"
              ? `${e.tool} ${e.phase.toLowerCase()}${e.title ? `: ${e.title}` : ""}${e.error ? ` (${e.error})` : ""}`
              : e.__typename === "AgentStepFinished"
                ? `step finished, $${e.cost.toFixed(4)}`
                : e.__typename === "AgentPermissionAsked"
                  ? `asks for ${e.permission}: ${e.patterns.join(" ")}`
                  : e.__typename === "AgentPermissionReplied"
                    ? `permission answered: ${e.reply}`
                    : e.__typename === "AgentError"
                      ? `error: ${e.message}`
                      : "turn done";
          add(h("li", { class: e.__typename === "AgentError" ? "failed" : null }, text));
        },
        error: failOrSignOut,
      },
    );
  }

  async function announce() {
    try {
      const data = await request(Q.ANNOUNCE, { id: sessionId, branch: selectedBranchId });
      myPresenceKey = data.announcePresence.key;
      refresh();
    } catch (error) {
      failOrSignOut(error);
    }
  }

  /** @param {unknown} error */
  function failOrSignOut(error) {
    if (closed) return;
    const code = /** @type {{ code?: string }} */ (error)?.code;
    if (code === "UNAUTHENTICATED") hooks.onSignedOut(error);
    else fail(error);
  }

  /**
   * Runs a mutation from a form or button: its result's notice, or its error.
   * @param {string} doing @param {() => Promise<void>} action
   */
  async function act(doing, action) {
    clearNotices();
    say(`${doing}…`);
    try {
      await action();
      refresh();
    } catch (error) {
      say("");
      failOrSignOut(error);
    }
  }

  const listeners = new AbortController();
  const on = (/** @type {EventTarget} */ target, /** @type {string} */ type, /** @type {any} */ fn) =>
    target.addEventListener(type, fn, { signal: listeners.signal });
  on(ui.branchSelect, "change", () => selectBranch(ui.branchSelect.value));
  /** A form of one field: submitting it runs `action` with the field's value, cleared once it worked. */
  const onSubmit = (
    /** @type {HTMLFormElement} */ form,
    /** @type {string} */ field,
    /** @type {string} */ doing,
    /** @type {(value: string) => Promise<void>} */ action,
  ) =>
    on(form, "submit", (/** @type {SubmitEvent} */ event) => {
      event.preventDefault();
      const input = /** @type {HTMLInputElement} */ (form.elements.namedItem(field));
      const value = input.value;
      act(doing, async () => {
        await action(value);
        input.value = "";
      });
    });
  onSubmit(ui.execForm, "command", "Starting the command", async (command) => {
    const { exec } = await request(Q.EXEC, { branch: selectedBranchId, command });
    say("Command queued");
    watchRun(exec.id);
  });
  onSubmit(ui.promptForm, "text", "Sending the prompt", async (text) => {
    const { prompt } = await request(Q.PROMPT, { branch: selectedBranchId, text });
    say("Prompt queued");
    watchRun(prompt.id);
  });
  onSubmit(ui.forkForm, "name", "Forking", async (name) => {
    const { fork } = await request(Q.FORK, { snapshot: selectedSnapshot()?.id, name: name.trim() || null });
    say(`Branch ${fork.name} created`);
    selectedBranchId = fork.id; // selected once the refresh lists it
    chosenSnapshotId = null;
    watchAgent(fork.id);
    announce();
  });
  on(ui.rollback, "click", () =>
    act("Rolling back", async () => {
      await request(Q.ROLLBACK, { branch: selectedBranchId, snapshot: selectedSnapshot()?.id });
      chosenSnapshotId = null;
      say(`${currentBranch()?.name ?? "The branch"} rolled back`);
    }),
  );
  on(ui.promote, "click", () =>
    act("Promoting", async () => {
      await request(Q.PROMOTE, { branch: selectedBranchId });
      say(`${currentBranch()?.name ?? "The branch"} is now the main branch`);
    }),
  );

  async function start() {
    ui.section.hidden = false;
    ui.title.textContent = "Loading…";
    for (const list of [ui.runs, ui.agentEvents, ui.presence, ui.output, ui.tree]) list.replaceChildren();
    ui.runState.textContent = "Select a run to see its output.";
    // Presence first, so nobody who arrives while the rest loads is missed.
    stops.push(
      subscribe(
        Q.PRESENCE,
        { id: sessionId },
        {
          next: ({ presence: e }) => {
            if (e.kind === "LEAVE") presence.delete(e.entry.key);
            else presence.set(e.entry.key, e.entry);
            renderPresence();
          },
          error: failOrSignOut,
        },
      ),
    );
    // The tree from the newest back, then every event after the cursor read with its first page
    // (none missed). Pages arrive newest first and are kept oldest first: the layout's first child
    // of a snapshot is its oldest.
    let cursor = null;
    let before = null;
    let loaded = 0;
    const pages = [];
    do {
      const data = await request(Q.SNAPSHOTS, { id: sessionId, before });
      if (closed) return;
      cursor ??= data.session.eventCursor;
      pages.unshift(data.session.snapshots.nodes);
      loaded += data.session.snapshots.nodes.length;
      const page = data.session.snapshots.pageInfo;
      before = page.hasPreviousPage ? page.startCursor : null;
      truncated = before !== null && loaded >= MAX_SNAPSHOTS;
    } while (before && !truncated);
    for (const snap of pages.flat()) snapshots.set(snap.id, snap);
    stops.push(
      subscribe(
        Q.SESSION_EVENTS,
        { id: sessionId, after: cursor },
        {
          next: ({ sessionEvents: e }) => {
            if (e.kind === "SESSION_DELETED") {
              fail(new Error("This session was deleted"));
              location.hash = "#/";
              return;
            }
            if (e.snapshot) snapshots.set(e.snapshot.id, e.snapshot);
            refresh();
          },
          error: failOrSignOut,
        },
      ),
    );
    await refresh.now();
    const timer = setInterval(announce, ANNOUNCE_EVERY_MS);
    stops.push(() => clearInterval(timer));
  }

  start().catch(failOrSignOut);

  return () => {
    closed = true;
    ui.section.hidden = true;
    listeners.abort();
    stopRun();
    stopAgent();
    for (const stop of [...stops, ...explorations.values()]) stop();
  };
}

/**
 * A refresh that coalesces bursts: calls made while one runs lead to exactly one more run after it.
 * @param {() => Promise<void>} run
 * @param {(error: unknown) => void} onError
 */
function coalesced(run, onError) {
  /** @type {Promise<void> | null} */
  let running = null;
  let again = false;
  const go = async () => {
    do {
      again = false;
      await run();
    } while (again);
  };
  const now = () => {
    if (running) {
      again = true;
      return running;
    }
    running = go().finally(() => {
      running = null;
    });
    return running;
  };
  const schedule = () => {
    now().catch(onError);
  };
  schedule.now = now;
  return schedule;
}
