// Permission requests you can answer: Session.agentPermissions, setAgentPermissions, answerPermission.
// The ask and the answer are agent events of the run (AgentPermissionAsked, AgentPermissionReplied).
import type { AGENT_PERMISSION_MODES, PermissionReply } from "../agent/permissions.ts";
import * as permissions from "../resolvers/agent-permissions.ts";
import { builder } from "./builder.ts";
import { RunRef, SessionRef } from "./refs.ts";

export const AgentPermissionMode = builder.enumType("AgentPermissionMode", {
  description: "Whether a session's agent asks before it acts.",
  values: {
    ALLOW: { description: "The agent edits, runs commands and fetches without asking (the default)." },
    ASK: {
      description:
        "The agent asks before it edits files, runs a command or fetches from the web: the turn waits for answerPermission.",
    },
  } satisfies Record<(typeof AGENT_PERMISSION_MODES)[number], unknown>,
});

export const PermissionReplyEnum = builder.enumType("PermissionReply", {
  description: "An answer to the agent's permission request.",
  values: {
    ONCE: { description: "Allow this call." },
    ALWAYS: {
      description: "Allow this call and calls like it (the ask's `always` patterns) from now on.",
    },
    REJECT: {
      description: "Refuse: the tool call fails (with your message) and the turn goes on.",
    },
  } as const,
});

builder.objectField(SessionRef, "agentPermissions", (t) =>
  t.field({
    type: AgentPermissionMode,
    description: "Whether the agent asks for approval (ASK) or runs unattended (ALLOW).",
    resolve: (s) => s.agentPermissions,
  }),
);

builder.mutationFields((t) => ({
  setAgentPermissions: t.field({
    type: SessionRef,
    description:
      "Makes the session's agent ask for approval, or run unattended, from its next turn on (owners only).",
    args: {
      sessionId: t.arg.id({ required: true, description: "The session." }),
      mode: t.arg({ type: AgentPermissionMode, required: true, description: "ASK or ALLOW." }),
    },
    resolve: (_r, args, ctx) =>
      permissions.setAgentPermissions(ctx, { sessionId: String(args.sessionId), mode: args.mode }),
  }),
  answerPermission: t.field({
    type: RunRef,
    description:
      "Answers a permission request (an AgentPermissionAsked event) of a running turn; the answer is an AgentPermissionReplied event of the run (editors).",
    args: {
      runId: t.arg.id({ required: true, description: "The running turn that asked." }),
      permissionId: t.arg.string({ required: true, description: "AgentPermissionAsked.id" }),
      reply: t.arg({ type: PermissionReplyEnum, required: true, description: "The answer." }),
      message: t.arg.string({ description: "Told to the agent (with REJECT: why, or what to do instead)." }),
    },
    resolve: (_r, args, ctx) =>
      permissions.answerPermission(ctx, {
        runId: String(args.runId),
        permissionId: args.permissionId,
        reply: args.reply.toLowerCase() as PermissionReply,
        message: args.message,
      }),
  }),
}));
