// Imports every domain file for its side effects, then builds the schema (fields in definition order).
import { builder } from "./builder.ts";
import "./scalars.ts";
import "./user.ts";
import "./session.ts";
import "./branch.ts";
import "./snapshot.ts";
import "./conversation.ts";
import "./run.ts";
import "./agent.ts";
import "./agent-permissions.ts";
import "./exploration.ts";
import "./usage.ts";
import "./presence.ts";
import "./health.ts";

export const schema = builder.toSchema();
