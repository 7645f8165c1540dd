// Relay connections (XConnection { pageInfo edges nodes }, XEdge { cursor node }), built by
// @pothos/plugin-relay; shared by every field that lists the same type, so each type has one.
import type { ObjectRef } from "@pothos/core";
import type { Page } from "../resolvers/pagination.ts";
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

/** A page as the connection types want it (every listing pages both ways: keysetPage, pageOfFiles). */
export function relayPage<T>(page: Page<T>) {
  return { edges: page.edges, pageInfo: page.pageInfo };
}
