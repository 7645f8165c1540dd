// Object refs shared across domain files (types reference each other: Session <-> Branch <-> Run).
import type { BranchRow, MemberRow, RunRow, SessionRow, SnapshotRow } from "../db/schema.ts";
import { builder } from "./builder.ts";

export const SessionRef = builder.objectRef<SessionRow>("Session");
export const BranchRef = builder.objectRef<BranchRow>("Branch");
export const SnapshotRef = builder.objectRef<SnapshotRow>("Snapshot");
export const RunRef = builder.objectRef<RunRow>("Run");
export const MemberRef = builder.objectRef<MemberRow>("Member");

export const RoleEnum = builder.enumType("Role", {
  description: "What a member may do in a session.",
  values: {
    OWNER: { description: "Everything: also delete, share, promote and set the agent's permissions." },
    EDITOR: { description: "Read, and run, prompt, write, checkpoint, fork and roll back." },
    VIEWER: { description: "Read and subscribe only." },
  } as const,
});
