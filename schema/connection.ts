// Relay connections (XConnection { pageInfo edges nodes }, XEdge { cursor node }), built by
// @pothos/plugin-relay; shared by every field that lists the same type, so each type has one.
import type { ObjectRef } from "@pothos/core";
import { badInput } from "../resolvers/errors.ts";
import type { Page, PageArgs } from "../resolvers/pagination.ts";
import { builder } from "./builder.ts";

// biome-ignore lint/suspicious/noExplicitAny: any object ref of this builder; the node type is read from it.
export function connection<R extends ObjectRef<any, any>>(name: string, node: R, what: string) {
  return builder.connectionObject(
    {
      type: node,
      name: `${name}Connection`,
      description: `A page of ${what}, with cursors to page either way.`,
    },
    { name: `${name}Edge`, description: `One of ${what} and its position (cursor) in the list.` },
  );
}

/** A page as the connection types want it: listings that page forward only report no previous page. */
export function relayPage<T>(page: Page<T>) {
  const { edges, pageInfo } = page;
  return {
    edges,
    pageInfo: {
      hasNextPage: pageInfo.hasNextPage,
      hasPreviousPage: pageInfo.hasPreviousPage ?? false,
      startCursor: pageInfo.startCursor === undefined ? (edges[0]?.cursor ?? null) : pageInfo.startCursor,
      endCursor: pageInfo.endCursor,
    },
  };
}

/**
 * For a listing whose resolver pages forward only: `last`/`before` are refused with a typed error
 * (never silently read as a first page).
 */
export function forwardOnly<A extends PageArgs>(args: A, field: string): A {
  const arg = args.last != null ? "last" : args.before != null ? "before" : null;
  if (arg) throw badInput(`${field} pages forward only (first, after) for now`, arg);
  return args;
}
