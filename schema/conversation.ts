// Snapshot.conversation: the agent's messages as a snapshot holds them (resolvers/conversation.ts).
import type { ConversationMessage, ConversationToolCall } from "../agent/conversation.ts";
import { CONVERSATION_LIMITS } from "../agent/conversation.ts";
import * as conversations from "../resolvers/conversation.ts";
import { builder } from "./builder.ts";
import { SnapshotRef } from "./refs.ts";

const date = (ms: number | null) => (ms === null ? null : new Date(ms));

const AgentMessageRole = builder.enumType("AgentMessageRole", {
  description: "Who a conversation message is from.",
  values: {
    USER: { description: "A prompt." },
    ASSISTANT: { description: "The agent's answer (one model step)." },
  } as const,
});

const AgentTokens = builder.objectRef<NonNullable<ConversationMessage["tokens"]>>("AgentTokens").implement({
  description: "Tokens one model step used, as the provider reported them.",
  fields: (t) => ({
    input: t.exposeInt("input", { description: "Tokens sent to the model." }),
    output: t.exposeInt("output", { description: "Tokens the model answered with." }),
    reasoning: t.exposeInt("reasoning", { description: "Reasoning tokens." }),
    cacheRead: t.exposeInt("cacheRead", { description: "Input tokens read from the provider's cache." }),
    cacheWrite: t.exposeInt("cacheWrite", { description: "Input tokens written to the provider's cache." }),
  }),
});

const AgentToolCall = builder.objectRef<ConversationToolCall>("AgentToolCall").implement({
  description: "A tool call of an agent message, as it ended (or stood when the snapshot was taken).",
  fields: (t) => ({
    callId: t.exposeString("callId", { description: "The call's id (AgentToolEvent.callId)." }),
    tool: t.exposeString("tool", { description: 'The tool: "bash", "edit", "read"…' }),
    status: t.exposeString("status", { description: '"pending", "running", "completed" or "error"' }),
    input: t.field({
      type: "JSON",
      nullable: true,
      description: "The tool's arguments (null when left out: see inputTruncated).",
      resolve: (c) => c.input ?? null,
    }),
    inputTruncated: t.exposeBoolean("inputTruncated", {
      description: `The input is larger than ${CONVERSATION_LIMITS.inputChars} characters of JSON and left out (title says what it was).`,
    }),
    title: t.exposeString("title", {
      nullable: true,
      description: "A short summary opencode gives the call.",
    }),
    output: t.exposeString("output", { nullable: true, description: "What it returned." }),
    error: t.exposeString("error", { nullable: true, description: "Why it failed, if it did." }),
    outputTruncated: t.exposeBoolean("outputTruncated", {
      description: `Output or error cut at ${CONVERSATION_LIMITS.outputChars} characters.`,
    }),
    startedAt: t.field({
      type: "DateTime",
      nullable: true,
      description: "When it started.",
      resolve: (c) => date(c.startedAt),
    }),
    finishedAt: t.field({
      type: "DateTime",
      nullable: true,
      description: "When it ended (null if it had not).",
      resolve: (c) => date(c.finishedAt),
    }),
  }),
});

const AgentMessage = builder.objectRef<ConversationMessage>("AgentMessage").implement({
  description: "One message of the agent's conversation: a prompt, or one model step of the agent's answer.",
  fields: (t) => ({
    id: t.exposeString("id", { description: "opencode's id of the message." }),
    role: t.field({ type: AgentMessageRole, description: "Who it is from.", resolve: (m) => m.role }),
    text: t.exposeString("text", { description: "Its text parts, joined." }),
    textTruncated: t.exposeBoolean("textTruncated", {
      description: `Text cut at ${CONVERSATION_LIMITS.textChars} characters.`,
    }),
    toolCalls: t.field({
      type: [AgentToolCall],
      description: "Tools it called, in order.",
      resolve: (m) => m.toolCalls,
    }),
    createdAt: t.field({
      type: "DateTime",
      description: "When it began.",
      resolve: (m) => new Date(m.createdAt),
    }),
    completedAt: t.field({
      type: "DateTime",
      nullable: true,
      description: "When it was complete (null if it was not).",
      resolve: (m) => date(m.completedAt),
    }),
    tokens: t.field({
      type: AgentTokens,
      nullable: true,
      description: "Tokens it used (answers only).",
      resolve: (m) => m.tokens,
    }),
    cost: t.exposeFloat("cost", { nullable: true, description: "Cost in USD (answers only)." }),
    model: t.exposeString("model", { nullable: true, description: "The model that answered." }),
    finish: t.exposeString("finish", {
      nullable: true,
      description: 'Why the model stopped: "stop", "tool-calls", "length"…',
    }),
    error: t.exposeString("error", { nullable: true, description: "Why the step failed, if it did." }),
  }),
});

const AgentConversation = builder
  .objectRef<conversations.SnapshotConversation>("AgentConversation")
  .implement({
    description: "The agent's conversation (opencode's session) as a snapshot holds it.",
    fields: (t) => ({
      sessionId: t.exposeString("sessionId", { description: "opencode's own session id." }),
      title: t.exposeString("title", { nullable: true, description: "The title opencode gave it." }),
      messages: t.field({
        type: [AgentMessage],
        description: "The latest messages, oldest first.",
        resolve: (c) => c.messages,
      }),
      totalMessages: t.exposeInt("totalMessages", { description: "How many messages it has in all." }),
      truncated: t.exposeBoolean("truncated", { description: "Older messages were left out." }),
    }),
  });

builder.objectField(SnapshotRef, "conversation", (t) =>
  t.field({
    type: AgentConversation,
    nullable: true,
    description:
      "The agent's conversation as of this snapshot (a fork's shows its parent's messages, then its own); null when no agent turn ran before it.",
    args: {
      last: t.arg.int({
        description: `The latest messages to return (default 50, at most ${CONVERSATION_LIMITS.messages}).`,
      }),
    },
    resolve: (s, args, ctx) => conversations.snapshotConversation(ctx, s, args.last),
  }),
);
