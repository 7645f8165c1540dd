// Relay cursor pagination over (createdAt, id): stable under inserts, both ways (`first`/`after`
// forward, `last`/`before` backward), bounded, with typed errors for what a client gets wrong.
import { and, asc, desc, eq, gt, lt, or, type SQL } from "drizzle-orm";
import type { SQLiteColumn } from "drizzle-orm/sqlite-core";
import { badInput } from "./errors.ts";

/** What a connection field says about the page it returned (Relay's PageInfo). */
export interface PageInfo {
  hasNextPage: boolean;
  hasPreviousPage: boolean;
  startCursor: string | null;
  endCursor: string | null;
}

export interface Page<T> {
  edges: { cursor: string; node: T }[];
  pageInfo: PageInfo;
}

/** A connection field's arguments, as GraphQL hands them over. */
export interface PageArgs {
  first?: number | null;
  after?: string | null;
  last?: number | null;
  before?: string | null;
}

export interface Cursor {
  at: number;
  id: string;
}

/** The most edges one page may hold (`first` or `last`). */
export const MAX_PAGE = 100;

/** A checked page request: how many edges, from which end, between which cursors. */
export interface PageRequest {
  size: number;
  backward: boolean;
  after: Cursor | null;
  before: Cursor | null;
}

function checkedSize(value: number, arg: "first" | "last", max: number): number {
  if (!Number.isInteger(value) || value < 0 || value > max) throw badInput(`${arg} must be 0 to ${max}`, arg);
  return value;
}

/**
 * Checks a connection's arguments as graphql-relay expects: `first` or `last`, not both (BAD_USER_INPUT),
 * each 0 to `max`, cursors from this API. `first: 0` (or `last: 0`) asks only for pageInfo.
 */
export function pageRequest(args: PageArgs, defaults: { size?: number; max?: number } = {}): PageRequest {
  const max = defaults.max ?? MAX_PAGE;
  const hasFirst = args.first !== null && args.first !== undefined;
  const hasLast = args.last !== null && args.last !== undefined;
  if (hasFirst && hasLast) throw badInput("Pass first or last, not both", "last");
  const backward = hasLast || (!hasFirst && args.before != null && args.after == null);
  const size = hasFirst
    ? checkedSize(args.first!, "first", max)
    : hasLast
      ? checkedSize(args.last!, "last", max)
      : Math.min(defaults.size ?? 20, max);
  return {
    size,
    backward,
    after: decodeCursor(args.after, "after"),
    before: decodeCursor(args.before, "before"),
  };
}

export function encodeCursor(row: { createdAt: Date; id: string }): string {
  return Buffer.from(`${row.createdAt.getTime()}:${row.id}`).toString("base64url");
}

export function decodeCursor(
  cursor: string | null | undefined,
  arg: "after" | "before" = "after",
): Cursor | null {
  if (cursor === null || cursor === undefined) return null;
  // At most 15 digits: any real timestamp, and never a number too large to be a date.
  const m =
    cursor.length <= 200 ? /^(\d{1,15}):([a-z]{2,3}_[0-9a-z]{26})$/.exec(decodeBase64url(cursor)) : null;
  if (!m) throw badInput(`${arg} is not a cursor from this API`, arg);
  return { at: Number(m[1]), id: m[2]! };
}

const decodeBase64url = (s: string) =>
  /^[A-Za-z0-9_-]*$/.test(s) ? Buffer.from(s, "base64url").toString() : "";

/** Listing order: "desc" is newest first. */
type Dir = "asc" | "desc";

/** The SQL condition "comes after the cursor" for a listing ordered by (createdAt, id) in `dir`. */
export function afterCursor(
  createdAt: SQLiteColumn,
  id: SQLiteColumn,
  cursor: Cursor | null,
  dir: Dir,
): SQL | undefined {
  if (!cursor) return undefined;
  const at = new Date(cursor.at);
  const beyond = dir === "desc" ? lt : gt;
  return or(beyond(createdAt, at), and(eq(createdAt, at), beyond(id, cursor.id)));
}

const flip = (dir: Dir): Dir => (dir === "asc" ? "desc" : "asc");

export const orderBy = (createdAt: SQLiteColumn, id: SQLiteColumn, dir: Dir) =>
  dir === "desc" ? [desc(createdAt), desc(id)] : [asc(createdAt), asc(id)];

/** One query of a keyset page: the rows matching `where`, in `orderBy`, at most `limit`. */
export interface Window {
  where: SQL | undefined;
  orderBy: SQL[];
  limit: number;
}

/**
 * A page of a listing ordered by (createdAt, id) in `dir`, in either direction. `fetch` runs one
 * query of the listing with the window's condition ANDed to its own scope. One query for the page
 * (one row more than asked says whether there is more that way) and, when a cursor bounds the other
 * end, a one-row query for whether anything lies beyond it, so both hasNextPage and hasPreviousPage
 * are exact.
 */
export async function keysetPage<T extends { createdAt: Date; id: string }>(
  args: PageArgs,
  listing: { createdAt: SQLiteColumn; id: SQLiteColumn; dir: Dir; defaultSize?: number },
  fetch: (window: Window) => Promise<T[]>,
): Promise<Page<T>> {
  const req = pageRequest(args, { size: listing.defaultSize });
  const { createdAt, id, dir } = listing;
  const between = and(
    afterCursor(createdAt, id, req.after, dir),
    afterCursor(createdAt, id, req.before, flip(dir)),
  );
  // Backward pages read from the `before` end, in reverse, and are put back in listing order.
  const readDir = req.backward ? flip(dir) : dir;
  // The cursor on the side the page does not read from: anything past it is the other way's "more".
  const otherEnd = req.backward ? req.before : req.after;
  const [rows, beyond] = await Promise.all([
    fetch({ where: between, orderBy: orderBy(createdAt, id, readDir), limit: req.size + 1 }),
    otherEnd
      ? fetch({
          where: afterCursor(createdAt, id, otherEnd, flip(readDir)),
          orderBy: orderBy(createdAt, id, flip(readDir)),
          limit: 1,
        })
      : Promise.resolve([]),
  ]);
  const slice = rows.slice(0, req.size);
  if (req.backward) slice.reverse();
  const more = rows.length > req.size;
  const edges = slice.map((node) => ({ cursor: encodeCursor(node), node }));
  return {
    edges,
    pageInfo: {
      hasNextPage: req.backward ? beyond.length > 0 : more,
      hasPreviousPage: req.backward ? more : beyond.length > 0,
      startCursor: edges[0]?.cursor ?? null,
      endCursor: edges.at(-1)?.cursor ?? null,
    },
  };
}
