// The root `node(id:)` and `nodes(ids:)` fields (created by @pothos/plugin-relay; their options are
// given to the builder). Access is resolvers/node.ts's: exactly as each object's typed field checks it.

import type { Context } from "../resolvers/context.ts";
import { badInput } from "../resolvers/errors.ts";
import { loadNode, MAX_NODE_IDS } from "../resolvers/node.ts";

type GlobalId = { typename: string; id: string };

export const nodeQueryOptions = {
  description:
    "Any object by its global id (Relay's refetch): a session, branch, snapshot, run, exploration, user, API key or share link. NOT_FOUND (and null) for an id you may not see, exactly as the object's own field answers.",
  args: { id: { description: "A global id: any object's `id`." } },
  resolve: (_root: unknown, args: { id: GlobalId }, ctx: Context) => loadNode(ctx, args.id.id),
};

export const nodesQueryOptions = {
  description: `Several objects by global id, in the order asked (at most ${MAX_NODE_IDS}); each one you may not see is null with a NOT_FOUND error at its position.`,
  args: { ids: { description: `Global ids (1 to ${MAX_NODE_IDS}).` } },
  resolve: (_root: unknown, args: { ids: GlobalId[] }, ctx: Context) => {
    if (args.ids.length > MAX_NODE_IDS) throw badInput(`Pass at most ${MAX_NODE_IDS} ids`, "ids");
    // One promise per id: a refused id fails only its own position. The loaders batch them all.
    return args.ids.map((id) => loadNode(ctx, id.id));
  },
};
