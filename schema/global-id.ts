// Global ids are the public ids themselves ("ses_01jd…"): unique across kinds and prefixed by kind
// (db/ids.ts), so the prefix names the GraphQL type and no base64 wrapping is needed. Public ids stay
// exactly what every other field and argument takes.
import { type IdKind, idKind } from "../db/ids.ts";
import { badInput } from "../resolvers/errors.ts";

/** The type each id kind names in `node(id:)` (a share link is its owners' view, SessionShareLink). */
export const NODE_TYPES = {
  usr: "User",
  key: "ApiKey",
  ses: "Session",
  br: "Branch",
  snp: "Snapshot",
  run: "Run",
  exp: "Exploration",
  lnk: "SessionShareLink",
} as const satisfies Record<IdKind, string>;

export const nodeTypeOf = (id: string): string | undefined => NODE_TYPES[idKind(id) as IdKind];

export const encodeGlobalID = (_typename: string, id: string | number | bigint) => String(id);

export function decodeGlobalID(globalID: string): { typename: string; id: string } {
  const typename = nodeTypeOf(globalID);
  if (!typename) throw badInput("Not an id of this API (ids look like ses_ and 26 letters or digits)", "id");
  return { typename, id: globalID };
}
