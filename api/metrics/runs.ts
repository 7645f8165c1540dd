// Runs by kind and status, their duration, and those queued or running here, counted from the session
// events this instance publishes (RUN_QUEUED, RUN_STARTED, RUN_FINISHED: the instance that executes
// a run publishes them) with the run's row read once at its start and end for what events do not carry.
import { eq } from "drizzle-orm";
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import type { Db } from "../../db/client.ts";
import { RUN_KINDS, RUN_STATUSES, runs } from "../../db/schema.ts";
import type { SessionEventPayload } from "../../resolvers/events.ts";

type Kind = (typeof RUN_KINDS)[number];
const ENDED = RUN_STATUSES.filter((s) => s !== "QUEUED" && s !== "RUNNING");

interface Active {
  kind: Kind | null;
  state: "queued" | "running";
}

export function runMetrics(registry: Registry, db: Db) {
  const registers = [registry];
  const finished = new Counter({
    name: "opencode_cloud_runs_total",
    help: "Runs that ended on this instance, by kind and final status",
    labelNames: ["kind", "status"],
    registers,
  });
  const started = new Counter({
    name: "opencode_cloud_runs_started_total",
    help: "Runs that started executing on this instance, by kind",
    labelNames: ["kind"],
    registers,
  });
  const duration = new Histogram({
    name: "opencode_cloud_run_duration_seconds",
    help: "Runs from start to end (command or agent turn, then its snapshot), by kind",
    labelNames: ["kind"],
    buckets: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600],
    registers,
  });
  // Series exist from the start (at 0), so rates and alerts work before the first run.
  for (const kind of RUN_KINDS) {
    started.inc({ kind }, 0);
    for (const status of ENDED) finished.inc({ kind, status }, 0);
  }

  const active = new Map<string, Active>();
  new Gauge({
    name: "opencode_cloud_runs_active",
    help: "Runs queued or running on this instance, by kind and state",
    labelNames: ["kind", "state"],
    registers,
    collect() {
      this.reset();
      for (const kind of RUN_KINDS) for (const state of ["queued", "running"]) this.set({ kind, state }, 0);
      for (const run of active.values()) if (run.kind) this.inc({ kind: run.kind, state: run.state });
    },
  });

  const rowOf = async (runId: string) => {
    const [row] = await db
      .select({
        kind: runs.kind,
        status: runs.status,
        startedAt: runs.startedAt,
        finishedAt: runs.finishedAt,
      })
      .from(runs)
      .where(eq(runs.id, runId));
    return row;
  };

  return {
    /** Sees each session event this instance publishes. */
    observe(event: SessionEventPayload): void {
      const { runId } = event;
      if (!runId) return;
      if (event.kind === "RUN_QUEUED") {
        const run: Active = { kind: null, state: "queued" };
        active.set(runId, run);
        void rowOf(runId).then(
          (row) => {
            run.kind = row?.kind ?? null;
          },
          () => active.delete(runId),
        );
      } else if (event.kind === "RUN_STARTED") {
        const run = active.get(runId);
        if (run) run.state = "running";
        const count = (kind: Kind) => started.inc({ kind });
        if (run?.kind) count(run.kind);
        else
          void rowOf(runId).then(
            (row) => row && count(row.kind),
            () => {},
          );
      } else if (event.kind === "RUN_FINISHED") {
        active.delete(runId);
        void rowOf(runId).then(
          (row) => {
            if (!row) return;
            finished.inc({ kind: row.kind, status: row.status });
            if (row.startedAt && row.finishedAt)
              duration.observe(
                { kind: row.kind },
                (row.finishedAt.getTime() - row.startedAt.getTime()) / 1000,
              );
          },
          () => {},
        );
      }
    },
  };
}
