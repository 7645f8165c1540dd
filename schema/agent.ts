// Agent events as GraphQL types: part of a run's output (RunEvent) and of a branch's agentEvents.
import type { AgentEvent } from "../agent/events.ts";
import type { UserModelKeyRow } from "../db/schema.ts";
import * as modelKeys from "../resolvers/model-keys.ts";
import * as runs from "../resolvers/run.ts";
import type { RunStreamEvent } from "../resolvers/runner.ts";
import { PermissionReplyEnum } from "./agent-permissions.ts";
import { builder } from "./builder.ts";
import { RunRef } from "./refs.ts";
import { UserRef } from "./user.ts";

type Wrapped<T extends AgentEvent["type"]> = RunStreamEvent & {
  type: "agent";
  event: Extract<AgentEvent, { type: T }>;
};

const SEQ = "Its place in the run's stream (runOutput): 1, 2, 3... in order.";
const RUN_ID = "The run (agent turn) it belongs to.";

const ToolPhase = builder.enumType("ToolPhase", {
  description: "Where a tool call is.",
  values: {
    STARTED: { description: "Called, with its input." },
    UPDATED: { description: "Running; output so far." },
    FINISHED: { description: "Done, with its output or error." },
  } as const,
});

export const AgentTextDelta = builder.objectRef<Wrapped<"text.delta">>("AgentTextDelta").implement({
  description: "A piece of the agent's answer as it streams.",
  fields: (t) => ({
    seq: t.exposeInt("seq", { description: SEQ }),
    runId: t.exposeID("runId", { description: RUN_ID }),
    partId: t.string({
      description: "The answer part it extends (deltas of one part concatenate).",
      resolve: (e) => e.event.partId,
    }),
    text: t.string({ description: "The new text.", resolve: (e) => e.event.delta }),
  }),
});

export const AgentToolEvent = builder
  .objectRef<Wrapped<"tool.started" | "tool.updated" | "tool.finished">>("AgentToolEvent")
  .implement({
    description:
      "A tool call of the agent: started (with input), updated (running output), finished (output or error).",
    fields: (t) => ({
      seq: t.exposeInt("seq", { description: SEQ }),
      runId: t.exposeID("runId", { description: RUN_ID }),
      phase: t.field({
        type: ToolPhase,
        description: "Where the call is.",
        resolve: (e) =>
          e.event.type === "tool.started"
            ? "STARTED"
            : e.event.type === "tool.updated"
              ? "UPDATED"
              : "FINISHED",
      }),
      callId: t.string({
        description: "The call's id (the same in all its phases).",
        resolve: (e) => e.event.callId,
      }),
      tool: t.string({ description: 'The tool: "bash", "edit", "read"…', resolve: (e) => e.event.tool }),
      input: t.field({
        type: "JSON",
        nullable: true,
        description: "The tool's arguments.",
        resolve: (e) => e.event.input ?? null,
      }),
      output: t.string({
        nullable: true,
        description: "What it returned so far.",
        resolve: (e) => e.event.output ?? null,
      }),
      error: t.string({
        nullable: true,
        description: "Why it failed, if it did.",
        resolve: (e) => e.event.error ?? null,
      }),
      title: t.string({
        nullable: true,
        description: "A short summary opencode gives the call.",
        resolve: (e) => e.event.title ?? null,
      }),
    }),
  });

export const AgentStepFinished = builder.objectRef<Wrapped<"step.finished">>("AgentStepFinished").implement({
  description: "One model call of the turn finished, with the tokens and cost opencode reports.",
  fields: (t) => ({
    seq: t.exposeInt("seq", { description: SEQ }),
    runId: t.exposeID("runId", { description: RUN_ID }),
    inputTokens: t.int({
      nullable: true,
      description: "Tokens sent to the model.",
      resolve: (e) => e.event.tokens?.input ?? null,
    }),
    outputTokens: t.int({
      nullable: true,
      description: "Tokens the model answered with.",
      resolve: (e) => e.event.tokens?.output ?? null,
    }),
    reasoningTokens: t.int({
      nullable: true,
      description: "Reasoning tokens, where the model reports them.",
      resolve: (e) => e.event.tokens?.reasoning ?? null,
    }),
    cost: t.float({ description: "Cost in USD as opencode computes it.", resolve: (e) => e.event.cost ?? 0 }),
  }),
});

export const AgentPermissionAsked = builder
  .objectRef<Wrapped<"permission.asked">>("AgentPermissionAsked")
  .implement({
    description:
      "The agent waits for approval (sessions in ASK mode): answer with answerPermission(runId, permissionId: id).",
    fields: (t) => ({
      seq: t.exposeInt("seq", { description: SEQ }),
      runId: t.exposeID("runId", { description: RUN_ID }),
      id: t.string({
        description: "The request's id: answerPermission's permissionId.",
        resolve: (e) => e.event.id,
      }),
      permission: t.string({
        description: '"edit", "bash", "webfetch", "external_directory"…',
        resolve: (e) => e.event.permission,
      }),
      patterns: t.stringList({
        description: "What exactly: the command's parts, the file…",
        resolve: (e) => e.event.patterns,
      }),
      always: t.stringList({
        description: "What an ALWAYS reply allows from now on.",
        resolve: (e) => e.event.always ?? [],
      }),
      toolCallId: t.string({
        nullable: true,
        description: "The tool call waiting (AgentToolEvent.callId).",
        resolve: (e) => e.event.callId ?? null,
      }),
      toolMessageId: t.string({
        nullable: true,
        description: "The agent message of the waiting call (AgentMessage.id).",
        resolve: (e) => e.event.messageId ?? null,
      }),
      metadata: t.field({
        type: "JSON",
        nullable: true,
        description: "Details: the command, or the file and its diff (strings over 64 KB cut).",
        resolve: (e) => e.event.metadata ?? null,
      }),
    }),
  });

export const AgentPermissionReplied = builder
  .objectRef<Wrapped<"permission.replied">>("AgentPermissionReplied")
  .implement({
    description: "A permission request was answered (through answerPermission, or in opencode's own client).",
    fields: (t) => ({
      seq: t.exposeInt("seq", { description: SEQ }),
      runId: t.exposeID("runId", { description: RUN_ID }),
      id: t.string({ description: "The AgentPermissionAsked.id answered.", resolve: (e) => e.event.id }),
      reply: t.field({
        type: PermissionReplyEnum,
        description: "The answer.",
        resolve: (e) => e.event.reply.toUpperCase() as "ONCE" | "ALWAYS" | "REJECT",
      }),
      feedback: t.string({
        nullable: true,
        description:
          "The message given with the answer (answerPermission's `message`): what the agent is told.",
        resolve: (e) => e.event.message ?? null,
      }),
      user: t.field({
        type: UserRef,
        nullable: true,
        description: "Who answered (null when answered in opencode's own client).",
        resolve: (e, _a, ctx) => (e.event.userId ? ctx.loaders.user.load(e.event.userId) : null),
      }),
    }),
  });

export const AgentError = builder.objectRef<Wrapped<"error">>("AgentError").implement({
  description: "The agent hit an error (the model or a tool); the turn usually ends.",
  fields: (t) => ({
    seq: t.exposeInt("seq", { description: SEQ }),
    runId: t.exposeID("runId", { description: RUN_ID }),
    message: t.string({ description: "What went wrong.", resolve: (e) => e.event.message }),
  }),
});

export const AgentDone = builder.objectRef<Wrapped<"done">>("AgentDone").implement({
  description: "The turn is over (the run's snapshot follows in RunFinished).",
  fields: (t) => ({
    seq: t.exposeInt("seq", { description: SEQ }),
    runId: t.exposeID("runId", { description: RUN_ID }),
  }),
});

export const AGENT_EVENT_TYPES = [
  AgentTextDelta,
  AgentToolEvent,
  AgentStepFinished,
  AgentPermissionAsked,
  AgentPermissionReplied,
  AgentError,
  AgentDone,
] as const;

export function agentEventType(e: RunStreamEvent & { type: "agent" }) {
  switch (e.event.type) {
    case "text.delta":
      return AgentTextDelta;
    case "step.finished":
      return AgentStepFinished;
    case "permission.asked":
      return AgentPermissionAsked;
    case "permission.replied":
      return AgentPermissionReplied;
    case "error":
      return AgentError;
    case "done":
      return AgentDone;
    default:
      return AgentToolEvent;
  }
}

const AgentEventUnion = builder.unionType("AgentEvent", {
  description: "Something the agent did during a turn, as it streams.",
  types: [...AGENT_EVENT_TYPES],
  resolveType: (e) => agentEventType(e as RunStreamEvent & { type: "agent" }),
});

builder.mutationFields((t) => ({
  prompt: t.field({
    type: RunRef,
    description:
      "One agent turn (opencode) on the branch, as a run: follow it with runOutput or agentEvents.",
    args: {
      branchId: t.arg.id({ required: true, description: "The branch the agent works on." }),
      text: t.arg.string({ required: true, description: "What to ask." }),
    },
    resolve: (_r, args, ctx) => runs.prompt(ctx, { branchId: String(args.branchId), text: args.text }),
  }),
}));

builder.subscriptionFields((t) => ({
  agentEvents: t.field({
    type: AgentEventUnion,
    description: "Agent events of every run on the branch, live.",
    args: { branchId: t.arg.id({ required: true, description: "The branch to follow." }) },
    subscribe: (_r, args, ctx) => runs.agentEvents(ctx, String(args.branchId)),
    resolve: (e) => e as never,
  }),
}));

const ModelKeyRef = builder.objectRef<UserModelKeyRow>("ModelKey").implement({
  description: "Your own model endpoint for agent runs. The key itself is never shown again.",
  fields: (t) => ({
    baseURL: t.exposeString("baseURL", { description: "The OpenAI-compatible endpoint." }),
    model: t.exposeString("model", { description: "The model name sent to it." }),
    keyHint: t.exposeString("keyHint", { description: "The key's last characters." }),
    updatedAt: t.expose("updatedAt", { type: "DateTime", description: "When it was last set." }),
  }),
});

builder.objectField(UserRef, "modelKey", (t) =>
  t.field({
    type: ModelKeyRef,
    nullable: true,
    description: "Your own model endpoint, if set (null for anyone else).",
    resolve: (u, _a, ctx) => modelKeys.myModelKey(ctx, u.id),
  }),
);

builder.mutationFields((t) => ({
  setModelKey: t.field({
    type: ModelKeyRef,
    description: "Use your own OpenAI-compatible endpoint and key for your agent runs (stored encrypted).",
    args: {
      baseURL: t.arg.string({
        required: true,
        description: "An OpenAI-compatible endpoint (public addresses only).",
      }),
      apiKey: t.arg.string({ required: true, description: "Its key (stored sealed, never shown again)." }),
      model: t.arg.string({ required: true, description: "The model name to send." }),
    },
    resolve: (_r, args, ctx) => modelKeys.setModelKey(ctx, args),
  }),
  deleteModelKey: t.boolean({
    description: "Go back to the platform's model.",
    resolve: (_r, _a, ctx) => modelKeys.deleteModelKey(ctx),
  }),
}));
