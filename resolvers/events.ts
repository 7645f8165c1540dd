// Session events: everything that changes a session's tree, branches or runs, on the bus with a
// cursor per session, so a client that read `eventCursor` in a mutation's reply misses nothing.
import { topics } from "../bus/bus.ts";
import type { Context } from "./context.ts";

export const SESSION_EVENT_KINDS = [
  "SNAPSHOT_ADDED",
  "HEAD_MOVED",
  "BRANCH_CREATED",
  "BRANCH_DELETED",
  "RUN_QUEUED",
  "RUN_STARTED",
  "RUN_FINISHED",
  "MAIN_CHANGED",
  "MEMBER_CHANGED",
  "SESSION_DELETED",
] as const;
export type SessionEventKind = (typeof SESSION_EVENT_KINDS)[number];

export interface SessionEventPayload {
  kind: SessionEventKind;
  sessionId: string;
  branchId?: string;
  snapshotId?: string;
  runId?: string;
  userId?: string;
  at: number;
}

export function publishSessionEvent(
  ctx: Pick<Context, "bus">,
  event: Omit<SessionEventPayload, "at">,
): Promise<unknown> {
  return ctx.bus.publish<SessionEventPayload>(topics.session(event.sessionId), { ...event, at: Date.now() });
}
