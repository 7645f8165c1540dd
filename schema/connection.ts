// Relay-style connections: XConnection { edges { cursor node } nodes pageInfo }.
import type { ObjectRef } from "@pothos/core";
import type { Page } from "../resolvers/pagination.ts";
import { builder } from "./builder.ts";

const PageInfo = builder.objectRef<Page<unknown>["pageInfo"]>("PageInfo").implement({
  fields: (t) => ({
    hasNextPage: t.exposeBoolean("hasNextPage"),
    endCursor: t.exposeString("endCursor", {
      nullable: true,
      description: "Pass as `after` for the next page.",
    }),
  }),
});

// biome-ignore lint/suspicious/noExplicitAny: any ref of this builder; T is read from it.
export function connection<R extends ObjectRef<any, any>>(name: string, node: R) {
  type T = R["$inferType"];
  const Edge = builder.objectRef<{ cursor: string; node: T }>(`${name}Edge`).implement({
    fields: (t) => ({
      cursor: t.exposeString("cursor"),
      node: t.field({ type: node, resolve: (e) => e.node }),
    }),
  });
  return builder.objectRef<Page<T>>(`${name}Connection`).implement({
    fields: (t) => ({
      edges: t.field({ type: [Edge], resolve: (p) => p.edges }),
      nodes: t.field({ type: [node], resolve: (p) => p.edges.map((e) => e.node) as never }),
      pageInfo: t.field({ type: PageInfo, resolve: (p) => p.pageInfo }),
    }),
  });
}
