// A graphql-ws client for tests: subscribe and collect results, wait for a count or a condition.
import { type Client, createClient } from "graphql-ws";

export interface Collector<T = any> {
  results: T[];
  errors: unknown[];
  /** Resolves when a result satisfies `predicate` (checking ones already received too). */
  until(predicate: (result: T) => boolean, timeoutMs?: number): Promise<T>;
  completed: Promise<void>;
  dispose(): void;
}

export function wsClient(url: string, token?: string): Client {
  return createClient({
    url,
    connectionParams: token ? { authorization: `Bearer ${token}` } : {},
    retryAttempts: 0,
    lazy: true,
    onNonLazyError: () => {},
  });
}

export function collect<T = any>(
  client: Client,
  query: string,
  variables: Record<string, unknown> = {},
): Collector<T> {
  const results: T[] = [];
  const errors: unknown[] = [];
  const waiters: { predicate: (r: T) => boolean; resolve: (r: T) => void }[] = [];
  let complete!: () => void;
  const completed = new Promise<void>((r) => {
    complete = r;
  });
  const dispose = client.subscribe<T>(
    { query, variables },
    {
      next: (value) => {
        const result = value as T;
        results.push(result);
        for (const w of [...waiters]) {
          if (w.predicate(result)) {
            waiters.splice(waiters.indexOf(w), 1);
            w.resolve(result);
          }
        }
      },
      error: (error) => {
        errors.push(error);
        complete();
      },
      complete: () => complete(),
    },
  );
  return {
    results,
    errors,
    completed,
    dispose,
    until(predicate, timeoutMs = 20_000) {
      const found = results.find(predicate);
      if (found) return Promise.resolve(found);
      return new Promise<T>((resolve, reject) => {
        const timer = setTimeout(
          () =>
            reject(
              new Error(
                `timed out waiting; got ${JSON.stringify(results).slice(0, 2000)} ${JSON.stringify(errors)}`,
              ),
            ),
          timeoutMs,
        );
        waiters.push({
          predicate,
          resolve: (r) => {
            clearTimeout(timer);
            resolve(r);
          },
        });
      });
    },
  };
}
