// Snapshot storage: the bytes every snapshot added (the sum of snapshots.added_bytes, what quotas
// charge), read from the database at most once per refresh interval however often Prometheus scrapes,
// and the snapshots this instance recorded (SNAPSHOT_ADDED events it published).
import { sql } from "drizzle-orm";
import { Counter, Gauge, type Registry } from "prom-client";
import type { Db } from "../../db/client.ts";
import { snapshots } from "../../db/schema.ts";

export function storageMetrics(registry: Registry, db: Db, refreshMs: number) {
  let readAt = Number.NEGATIVE_INFINITY;
  let reading: Promise<void> | null = null;
  const stored = new Gauge({
    name: "opencode_cloud_snapshot_stored_bytes",
    help: "Bytes kept by every snapshot in the database (sum of added_bytes; the same on every instance sharing it: aggregate with max)",
    registers: [registry],
    async collect() {
      if (Date.now() - readAt >= refreshMs) {
        // Scrapes that arrive while a read is in flight share it.
        reading ??= db
          .select({ total: sql<number>`coalesce(sum(${snapshots.addedBytes}), 0)`.as("stored_bytes") })
          .from(snapshots)
          .then(
            ([row]) => {
              this.set(Number(row?.total ?? 0));
              readAt = Date.now();
            },
            // Keeps the last value; the next scrape tries again.
            () => {},
          )
          .finally(() => {
            reading = null;
          });
        await reading;
      }
    },
  });
  void stored;
  const recorded = new Counter({
    name: "opencode_cloud_snapshots_recorded_total",
    help: "Snapshots recorded on this instance and announced as SNAPSHOT_ADDED (runs, checkpoints, file writes)",
    registers: [registry],
  });
  return { snapshotRecorded: () => recorded.inc() };
}
