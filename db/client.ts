// One database handle built from config: an embedded libSQL file by default, a libSQL/Turso URL in production.
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { type Client, createClient } from "@libsql/client";
import { drizzle, type LibSQLDatabase } from "drizzle-orm/libsql";
import * as schema from "./schema.ts";
import { gateTransactions } from "./transaction-gate.ts";

export type Db = LibSQLDatabase<typeof schema>;

/** How long a write waits for another connection's (or process's) write lock before SQLITE_BUSY. */
const BUSY_TIMEOUT_MS = 5000;

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
  // The busy timeout goes in the options, not only in a PRAGMA: the client keeps a pool of
  // connections (a transaction holds one of its own), and a PRAGMA reaches only the connection it ran on.
  const embedded = options.url.startsWith("file:");
  const opened = createClient({
    url: options.url,
    authToken: options.authToken,
    ...(embedded ? { timeout: BUSY_TIMEOUT_MS } : {}),
  });
  const client = embedded ? gateTransactions(opened) : opened;
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
  await client.execute(`PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}`);
  await client.execute("PRAGMA foreign_keys = ON");
  await client.execute("PRAGMA synchronous = NORMAL");
}
