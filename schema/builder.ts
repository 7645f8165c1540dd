// The schema builder: configuration only (context type, scalars, plugins, root types). No domain types here.
// @pothos/plugin-relay (the maintained Relay implementation for Pothos) builds Node, node/nodes,
// PageInfo, connections and their arguments; the descriptions below are the ones every connection shares.
// Not @pothos/plugin-simple-objects: each value type here already has one TypeScript shape, the
// resolver's return type, that `objectRef<T>().implement()` checks fields against; simple objects
// would infer a second shape from the fields instead.
import SchemaBuilder from "@pothos/core";
import RelayPlugin from "@pothos/plugin-relay";
import type { Context } from "../resolvers/context.ts";
import { MAX_PAGE } from "../resolvers/pagination.ts";
import { decodeGlobalID, encodeGlobalID, nodeTypeOf } from "./global-id.ts";
import { nodeQueryOptions, nodesQueryOptions } from "./node.ts";

export const builder = new SchemaBuilder<{
  Context: Context;
  Scalars: {
    DateTime: { Input: Date; Output: Date };
    JSON: { Input: unknown; Output: unknown };
  };
  DefaultFieldNullability: false;
  DefaultEdgesNullability: { list: false; items: false };
  DefaultNodeNullability: false;
}>({
  defaultFieldNullability: false,
  plugins: [RelayPlugin],
  relay: {
    encodeGlobalID,
    decodeGlobalID,
    // Objects are not branded as they load: the id's prefix already names the type.
    brandLoadedObjects: false,
    nodeQueryOptions,
    nodesQueryOptions,
    nodeTypeOptions: {
      description: "An object with a global id: refetch any of them with `node(id:)`.",
      resolveType: (value) => nodeTypeOf((value as { id: string }).id) ?? null,
    },
    idFieldOptions: {
      description:
        "The global id: the public id every field and argument takes, prefixed by its kind (`ses_`, `br_`, `run_`…).",
    },
    pageInfoTypeOptions: { description: "Where a page of a connection lies in the whole list." },
    hasNextPageFieldOptions: {
      description: "More edges follow the last one (page on with `first` and `after: endCursor`).",
    },
    hasPreviousPageFieldOptions: {
      description: "More edges come before the first one (page back with `last` and `before: startCursor`).",
    },
    startCursorFieldOptions: { description: "The first edge's cursor; null when the page is empty." },
    endCursorFieldOptions: { description: "The last edge's cursor; null when the page is empty." },
    firstArgOptions: {
      description: `Page forward: this many edges (0 to ${MAX_PAGE}; fileEntries allows more) from the start, or after \`after\`. Not with \`last\`.`,
    },
    afterArgOptions: { description: "Start after this cursor (an edge's cursor or pageInfo.endCursor)." },
    lastArgOptions: {
      description: `Page backward: this many edges (0 to ${MAX_PAGE}) from the end, or before \`before\`. Not with \`first\`.`,
    },
    beforeArgOptions: { description: "End before this cursor (an edge's cursor or pageInfo.startCursor)." },
    edgesFieldOptions: {
      nullable: { list: false, items: false },
      description: "The page's edges, each with its cursor, in the list's order.",
    },
    nodeFieldOptions: { nullable: false, description: "The object at this position." },
    cursorFieldOptions: { description: "This position, for `after` or `before`." },
    pageInfoFieldOptions: { description: "Where this page lies, and whether there is more either way." },
    nodesOnConnection: { description: "The page's objects, without cursors (the edges' nodes)." },
  },
});

builder.queryType({ description: "Reads: your account, sessions and everything in them." });
builder.mutationType({ description: "Changes: accounts, sessions, branches, runs, the agent." });
builder.subscriptionType({ description: "Live streams over graphql-ws: events, run output, presence." });
