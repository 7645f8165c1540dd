// Snapshot.conversation: the agent's messages as a snapshot holds them (resolvers/conversation.ts).
import type { ConversationMessage, ConversationToolCall } from "../agent/conversation.ts";
import { CONVERSATION_LIMITS } from "../agent/conversation.ts";
import * as conversations from "../resolvers/conversation.ts";
import { builder } from "./builder.ts";
import { SnapshotRef } from "./refs.ts";

const date = (ms: number | null) => (ms === null ? null : new Date(ms));

const AgentMessageRole = builder.enumType("AgentMessageRole", { values: ["USER", "ASSISTANT"] as const });

const AgentTokens = builder.objectRef<NonNullable<ConversationMessage["tokens"]>>("AgentTokens").implement({
  fields: (t) => ({
    input: t.exposeInt("input"),
    output: t.exposeInt("output"),
    reasoning: t.exposeInt("reasoning"),
    cacheRead: t.exposeInt("cacheRead"),
    cacheWrite: t.exposeInt("cacheWrite"),
  }),
});

const AgentToolCall = builder.objectRef<ConversationToolCall>("AgentToolCall").implement({
  description: "A tool call of an agent message, as it ended (or stood when the snapshot was taken).",
  fields: (t) => ({
    callId: t.exposeString("callId"),
    tool: t.exposeString("tool"),
    status: t.exposeString("status", { description: '"pending", "running", "completed" or "error"' }),
    input: t.field({ type: "JSON", nullable: true, resolve: (c) => c.input ?? null }),
    inputTruncated: t.exposeBoolean("inputTruncated", {
      description: `The input is larger than ${CONVERSATION_LIMITS.inputChars} characters of JSON and left out (title says what it was).`,
    }),
    title: t.exposeString("title", { nullable: true }),
    output: t.exposeString("output", { nullable: true }),
    error: t.exposeString("error", { nullable: true }),
    outputTruncated: t.exposeBoolean("outputTruncated", {
      description: `Output or error cut at ${CONVERSATION_LIMITS.outputChars} characters.`,
    }),
    startedAt: t.field({ type: "DateTime", nullable: true, resolve: (c) => date(c.startedAt) }),
    finishedAt: t.field({ type: "DateTime", nullable: true, resolve: (c) => date(c.finishedAt) }),
  }),
});

const AgentMessage = builder.objectRef<ConversationMessage>("AgentMessage").implement({
  description: "One message of the agent's conversation: a prompt, or one model step of the agent's answer.",
  fields: (t) => ({
    id: t.exposeString("id"),
    role: t.field({ type: AgentMessageRole, resolve: (m) => m.role }),
    text: t.exposeString("text"),
    textTruncated: t.exposeBoolean("textTruncated", {
      description: `Text cut at ${CONVERSATION_LIMITS.textChars} characters.`,
    }),
    toolCalls: t.field({ type: [AgentToolCall], resolve: (m) => m.toolCalls }),
    createdAt: t.field({ type: "DateTime", resolve: (m) => new Date(m.createdAt) }),
    completedAt: t.field({ type: "DateTime", nullable: true, resolve: (m) => date(m.completedAt) }),
    tokens: t.field({ type: AgentTokens, nullable: true, resolve: (m) => m.tokens }),
    cost: t.exposeFloat("cost", { nullable: true }),
    model: t.exposeString("model", { nullable: true }),
    finish: t.exposeString("finish", {
      nullable: true,
      description: 'Why the model stopped: "stop", "tool-calls", "length"…',
    }),
    error: t.exposeString("error", { nullable: true }),
  }),
});

const AgentConversation = builder
  .objectRef<conversations.SnapshotConversation>("AgentConversation")
  .implement({
    fields: (t) => ({
      sessionId: t.exposeString("sessionId", { description: "opencode's own session id." }),
      title: t.exposeString("title", { nullable: true }),
      messages: t.field({
        type: [AgentMessage],
        description: "The latest messages, oldest first.",
        resolve: (c) => c.messages,
      }),
      totalMessages: t.exposeInt("totalMessages"),
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
