// Keeps an embedded (file:) database from deadlocking itself. @libsql/client runs SQLite on the main
// thread, synchronously, over a small pool of connections; an interactive transaction holds one
// connection between awaits. If another statement runs meanwhile on a second connection and needs the
// write lock, SQLite's busy handler sleeps *synchronously*, so the event loop (and with it the
// transaction that holds the lock) cannot move: after busy_timeout the statement fails with
// SQLITE_BUSY. Seen as failed explorations once collab's group commits made transactions frequent.
// The gate makes statements wait (asynchronously) while this process has a transaction open, and lets
// one transaction open at a time. Other processes on the same file still use busy_timeout.
import type { Client, Transaction } from "@libsql/client";

class Gate {
  private open: Promise<void> | null = null;

  /** Resolves once no transaction of this process is open. */
  async idle(): Promise<void> {
    while (this.open) await this.open;
  }

  /** Waits for its turn, then holds the gate until the returned release is called (once). */
  async enter(): Promise<() => void> {
    await this.idle();
    let release!: () => void;
    this.open = new Promise<void>((resolve) => {
      release = () => {
        this.open = null;
        resolve();
      };
    });
    let released = false;
    return () => {
      if (released) return;
      released = true;
      release();
    };
  }
}

/** The same client, with every statement and transaction passing through one gate. */
export function gateTransactions(client: Client): Client {
  const gate = new Gate();
  const waiting =
    <A extends unknown[], R>(call: (...args: A) => Promise<R>) =>
    async (...args: A): Promise<R> => {
      await gate.idle();
      return call(...args);
    };
  const execute = waiting(client.execute.bind(client) as (...args: unknown[]) => Promise<unknown>);
  const batch = waiting(client.batch.bind(client));
  const executeMultiple = waiting(client.executeMultiple.bind(client));
  const migrate = waiting(client.migrate.bind(client));
  const transaction = async (...args: Parameters<Client["transaction"]>): Promise<Transaction> => {
    const release = await gate.enter();
    let tx: Transaction;
    try {
      tx = await client.transaction(...args);
    } catch (error) {
      release();
      throw error;
    }
    return endsWith(tx, release);
  };
  return new Proxy(client, {
    get(target, key, receiver) {
      if (key === "execute") return execute;
      if (key === "batch") return batch;
      if (key === "executeMultiple") return executeMultiple;
      if (key === "migrate") return migrate;
      if (key === "transaction") return transaction;
      const value = Reflect.get(target, key, receiver);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

/** The transaction, calling `release` once it is committed, rolled back or closed (whichever first). */
function endsWith(tx: Transaction, release: () => void): Transaction {
  const ending = (call: () => Promise<void>) => async () => {
    try {
      await call();
    } finally {
      release();
    }
  };
  const commit = ending(() => tx.commit());
  const rollback = ending(() => tx.rollback());
  const close = () => {
    try {
      tx.close();
    } finally {
      release();
    }
  };
  return new Proxy(tx, {
    get(target, key, receiver) {
      if (key === "commit") return commit;
      if (key === "rollback") return rollback;
      if (key === "close") return close;
      const value = Reflect.get(target, key, receiver);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}
