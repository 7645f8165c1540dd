// Relay-style cursor pagination over (createdAt, id), newest first: stable under inserts.
import { and, asc, desc, eq, gt, lt, or, type SQL } from "drizzle-orm";
import type { SQLiteColumn } from "drizzle-orm/sqlite-core";
import { badInput } from "./errors.ts";

export interface Page<T> {
  edges: { cursor: string; node: T }[];
  pageInfo: { hasNextPage: boolean; endCursor: string | null };
}

export interface Cursor {
  at: number;
  id: string;
}

export const MAX_PAGE = 100;

export function pageSize(first: number | null | undefined, fallback = 20): number {
  if (first === null || first === undefined) return fallback;
  if (!Number.isInteger(first) || first < 1 || first > MAX_PAGE)
    throw badInput(`first must be 1 to ${MAX_PAGE}`, "first");
  return first;
}

export function encodeCursor(row: { createdAt: Date; id: string }): string {
  return Buffer.from(`${row.createdAt.getTime()}:${row.id}`).toString("base64url");
}

export function decodeCursor(cursor: string | null | undefined): Cursor | null {
  if (cursor === null || cursor === undefined) return null;
  const m = /^(\d+):(.+)$/.exec(Buffer.from(cursor, "base64url").toString());
  if (!m) throw badInput("Not a cursor from this API", "after");
  return { at: Number(m[1]), id: m[2]! };
}

/** Builds a page from `size + 1` rows fetched in order (the extra row says whether there is more). */
export function toPage<T extends { createdAt: Date; id: string }>(rows: T[], size: number): Page<T> {
  const slice = rows.slice(0, size);
  return {
    edges: slice.map((node) => ({ cursor: encodeCursor(node), node })),
    pageInfo: {
      hasNextPage: rows.length > size,
      endCursor: slice.length ? encodeCursor(slice.at(-1)!) : null,
    },
  };
}

/** The SQL condition "comes after the cursor" for a listing ordered by (createdAt, id) in `dir`. */
export function afterCursor(
  createdAt: SQLiteColumn,
  id: SQLiteColumn,
  cursor: Cursor | null,
  dir: "asc" | "desc",
): SQL | undefined {
  if (!cursor) return undefined;
  const at = new Date(cursor.at);
  const beyond = dir === "desc" ? lt : gt;
  return or(beyond(createdAt, at), and(eq(createdAt, at), beyond(id, cursor.id)));
}

export const orderBy = (createdAt: SQLiteColumn, id: SQLiteColumn, dir: "asc" | "desc") =>
  dir === "desc" ? [desc(createdAt), desc(id)] : [asc(createdAt), asc(id)];
