// Starts the real server (same composition root as `npm start`) on an ephemeral port with a fresh
// embedded database, and offers small GraphQL helpers.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig } from "../../api/config.ts";
import { bunRuntime } from "../../api/runtime/bun.ts";
import { type StartedServer, startServer } from "../../api/start.ts";

export interface GraphQLResponse<T = Record<string, unknown>> {
  status: number;
  data?: T | null;
  errors?: { message: string; path?: string[]; extensions?: Record<string, unknown> }[];
  headers: Headers;
  text: string;
}

export interface TestServer extends StartedServer {
  dataDir: string;
  /** Every log line the server wrote (parsed JSON). */
  logs: Record<string, unknown>[];
  /** Every SQL statement sent so far. */
  queries: string[];
  wsUrl: string;
  gql<T = Record<string, any>>(
    query: string,
    variables?: Record<string, unknown>,
    token?: string,
  ): Promise<GraphQLResponse<T>>;
  /** Registers a fresh user; returns its token and id. */
  signUp(email?: string): Promise<{ token: string; userId: string; email: string }>;
  close(): Promise<void>;
}

export async function startTestServer(env: Record<string, string> = {}): Promise<TestServer> {
  const dataDir = mkdtempSync(join(tmpdir(), "occ-test-"));
  const config = loadConfig({ NODE_ENV: "test", PORT: "0", DATA_DIR: dataDir, LOG_LEVEL: "warn", ...env });
  const logs: Record<string, unknown>[] = [];
  const queries: string[] = [];
  const server = await startServer(config, bunRuntime, {
    logSink: (line) => logs.push(JSON.parse(line)),
    onQuery: (sql) => queries.push(sql),
  });
  let users = 0;

  const gql: TestServer["gql"] = async (query, variables, token) => {
    const res = await fetch(`${server.url}/graphql`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        accept: "application/graphql-response+json",
        ...(token ? { authorization: `Bearer ${token}` } : {}),
      },
      body: JSON.stringify({ query, variables }),
    });
    const text = await res.text();
    const body = JSON.parse(text);
    return { status: res.status, data: body.data, errors: body.errors, headers: res.headers, text };
  };

  return {
    ...server,
    dataDir,
    logs,
    queries,
    wsUrl: `${server.url.replace(/^http/, "ws")}/graphql`,
    gql,
    async signUp(email = `user${++users}-${crypto.randomUUID().slice(0, 8)}@example.com`) {
      const res = await gql(
        `mutation($email: String!) { register(email: $email, password: "password123") { token user { id } } }`,
        { email },
      );
      if (!res.data?.register) throw new Error(`sign-up failed: ${res.text}`);
      return { token: res.data.register.token, userId: res.data.register.user.id, email };
    },
    async close() {
      await server.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** The first error's code, for terse assertions. */
export const codeOf = (res: { errors?: { extensions?: Record<string, unknown> }[] }) =>
  res.errors?.[0]?.extensions?.code;
