// Agent permissions: a session's agent runs unattended (ALLOW, the default) or asks before it edits
// files, runs commands or fetches from the web (ASK). opencode applies a session's own permission
// ruleset on top of its config (the last matching rule wins; PATCH /session/{id} {permission} appends
// to what the session has), so each ruleset below starts from "allow everything" and is complete
// whatever was applied before: a live server switches mode by PATCHing its session before a turn.
// An ask arrives as opencode's `permission.asked` event; POST /permission/{id}/reply answers it.

export type AgentPermissionMode = "ALLOW" | "ASK";
export const AGENT_PERMISSION_MODES = ["ALLOW", "ASK"] as const;

/** How an ask is answered: this call only, this kind of call from now on, or refused. */
export type PermissionReply = "once" | "always" | "reject";

export interface PermissionRule {
  permission: string;
  pattern: string;
  action: "allow" | "ask" | "deny";
}

/** Tools that change the workspace or reach out: what ASK asks about (reading and searching never). */
const ASKED = ["edit", "bash", "webfetch", "external_directory"] as const;

/**
 * The session ruleset for a mode. Both modes deny the interactive tools `opencode run` also denies
 * (a question or a plan switch would wait for an answer nobody is asked for).
 */
export function permissionRules(mode: AgentPermissionMode): PermissionRule[] {
  return [
    { permission: "*", pattern: "*", action: "allow" },
    ...(mode === "ASK"
      ? ASKED.map((permission) => ({ permission, pattern: "*", action: "ask" as const }))
      : []),
    { permission: "question", pattern: "*", action: "deny" },
    { permission: "plan_enter", pattern: "*", action: "deny" },
    { permission: "plan_exit", pattern: "*", action: "deny" },
  ];
}

/**
 * Answers a pending ask through the branch's live opencode server (POST /permission/{id}/reply).
 * Implemented by the live agent pool; providers whose agent runs per turn have none.
 */
export interface PermissionReplier {
  replyPermission(
    branchId: string,
    permissionId: string,
    reply: PermissionReply,
    message?: string,
  ): Promise<void>;
}
