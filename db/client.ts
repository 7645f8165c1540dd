// One database handle built from config: an embedded libSQL file by default, a libSQL/Turso URL in production.
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { type Client, createClient } from "@libsql/client";
import { drizzle, type LibSQLDatabase } from "drizzle-orm/libsql";
import * as schema from "./schema.ts";

export type Db = LibSQLDatabase<typeof schema>;

export interface Database {
  db: Db;
  client: Client;
  close(): void;
}

export function openDatabase(options: {
  url: string;
  authToken?: string | undefined;
  /** Called with every SQL statement drizzle sends (tests count them). */
  onQuery?: (sql: string) => void;
}): Database {
  if (options.url.startsWith("file:")) {
    const path = options.url.slice("file:".length);
    if (path && path !== ":memory:") mkdirSync(dirname(path), { recursive: true });
  }
  const client = createClient({ url: options.url, authToken: options.authToken });
  const onQuery = options.onQuery;
  const db = drizzle(client, {
    schema,
    ...(onQuery ? { logger: { logQuery: (sql: string) => onQuery(sql) } } : {}),
  });
  return { db, client, close: () => client.close() };
}

/** Settings that make the embedded file safe and fast under concurrent readers and one writer. */
export async function tuneEmbedded(client: Client, url: string): Promise<void> {
  if (!url.startsWith("file:")) return;
  await client.execute("PRAGMA journal_mode = WAL");
  await client.execute("PRAGMA busy_timeout = 5000");
  await client.execute("PRAGMA foreign_keys = ON");
  await client.execute("PRAGMA synchronous = NORMAL");
}
