// Starts the real server (same composition root as `npm start`) on an ephemeral port with a fresh
// embedded database, and offers small GraphQL helpers.
//
// TEST_RUNTIME=deno (the second pass of `npm test`, scripts/test.mjs) runs the same suites against
// the real Deno server instead: `deno run -A api/main-deno.ts` as a child process with the test's
// config as its environment, killed on close. The handle has the same shape; what only exists in the
// server's memory (SQL statements seen, loaded rooms, live agents) is Bun-only, see `inProcessOnly`.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createTokenService } from "../../api/auth/tokens.ts";
import { loadConfig } from "../../api/config.ts";
import { bunRuntime } from "../../api/runtime/bun.ts";
import { type StartedServer, startServer } from "../../api/start.ts";
import { type ServerRuntime, startServerProcess } from "../../scripts/lib/server-process.ts";
import { postGraphql } from "./graphql-http.ts";

/** The runtime the test servers run on: Bun in process (default), or Deno as a child process. */
export const testRuntime: ServerRuntime = process.env.TEST_RUNTIME === "deno" ? "deno" : "bun";

/**
 * Why a test that reads the server's memory cannot run on this pass (null on Bun): use it with
 * `testUnless(inProcessOnly)` (test/utils/isolation.ts) so the skip is counted and explained.
 */
export const inProcessOnly: string | null =
  testRuntime === "deno"
    ? "reads the server's memory (Bun in process only; TEST_RUNTIME=deno runs a process)"
    : null;

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
  if (testRuntime === "deno") return startDenoTestServer(env);
  const dataDir = mkdtempSync(join(tmpdir(), "occ-test-"));
  const config = loadConfig({ NODE_ENV: "test", PORT: "0", DATA_DIR: dataDir, LOG_LEVEL: "warn", ...env });
  const logs: Record<string, unknown>[] = [];
  const queries: string[] = [];
  const server = await startServer(config, bunRuntime, {
    logSink: (line) => logs.push(JSON.parse(line)),
    onQuery: (sql) => queries.push(sql),
  });
  const { gql, signUp } = graphqlHelpers(server.url);

  return {
    ...server,
    dataDir,
    logs,
    queries,
    wsUrl: `${server.url.replace(/^http/, "ws")}/graphql`,
    gql,
    signUp,
    async close() {
      await server.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** GraphQL over HTTP to a test server, and a fresh user (both runtimes). */
function graphqlHelpers(url: string): Pick<TestServer, "gql" | "signUp"> {
  let users = 0;

  const gql: TestServer["gql"] = (query, variables, token) => postGraphql(url, query, variables, token);

  return {
    gql,
    async signUp(email = `user${++users}-${crypto.randomUUID().slice(0, 8)}@example.com`) {
      const res = await gql(
        `mutation($email: String!) { register(email: $email, password: "password123") { token user { id } } }`,
        { email },
      );
      if (!res.data?.register) throw new Error(`sign-up failed: ${res.text}`);
      return { token: res.data.register.token, userId: res.data.register.user.id, email };
    },
  };
}

/**
 * The same handle over the real Deno server process. Process-safe equivalents: `logs` are the JSON
 * lines it wrote to stderr, `tokens` signs and verifies with the same key (JWT_SECRET, or the
 * secret it generated in its data directory). `queries`, `collabRooms()` and `agents` live in its
 * memory: reading them throws, naming why (gate such tests with `inProcessOnly`).
 */
async function startDenoTestServer(env: Record<string, string>): Promise<TestServer> {
  const dataDir = mkdtempSync(join(tmpdir(), "occ-test-"));
  const serverEnv = { NODE_ENV: "test", PORT: "0", DATA_DIR: dataDir, LOG_LEVEL: "warn", ...env };
  const proc = await startServerProcess(serverEnv, { runtime: "deno", dataDir });
  // Built after the start: in development the server generates its secret into the data directory.
  const tokens = await createTokenService(loadConfig(serverEnv));
  const { gql, signUp } = graphqlHelpers(proc.url);
  const notHere = (what: string): never => {
    throw new Error(`TestServer.${what} ${inProcessOnly}`);
  };
  let stopped: Promise<void> | undefined;
  const stop = () => {
    stopped ??= (async () => {
      if (proc.proc.exitCode === null) proc.proc.kill("SIGTERM");
      await proc.proc.exited;
    })();
    return stopped;
  };
  return {
    url: proc.url,
    port: Number(new URL(proc.url).port),
    tokens,
    collabRooms: () => notHere("collabRooms()"),
    get agents() {
      return notHere("agents");
    },
    get queries() {
      return notHere("queries");
    },
    get logs() {
      return proc
        .output()
        .split("\n")
        .filter((line) => line.startsWith("{"))
        .flatMap((line) => {
          try {
            return [JSON.parse(line) as Record<string, unknown>];
          } catch {
            return [];
          }
        });
    },
    dataDir,
    wsUrl: `${proc.url.replace(/^http/, "ws")}/graphql`,
    gql,
    signUp,
    stop,
    async close() {
      await stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** The first error's code, for terse assertions. */
export const codeOf = (res: { errors?: { extensions?: Record<string, unknown> }[] }) =>
  res.errors?.[0]?.extensions?.code;
