// The cost of branch ownership (cluster/): the same operations on one branch sent to the instance
// that owns its live sandbox and sent to another instance, which forwards them to the owner over
// signed HTTP. Samples alternate owner / forwarded so drift on a shared machine hits both alike.
//   - writeFile: the mutation's answer (the write lands in the owner's live workspace, recorded).
//   - a live-file read: `branch { file(path) { content } }` (the owner's live workspace; on the
//     other instance through the owner's live.read).
//   - exec "true" to its end: the mutation sent, then runOutput followed over graphql-ws on the same
//     instance until RunFinished (the run executes on the owner; its events reach the other instance
//     through the bus).
import { createClient } from "graphql-ws";
import type { ServerProcess } from "./server-process.ts";

export const OWNERSHIP_OPS = ["writeFile", "live-file read", "exec true to its end"] as const;
export type OwnershipOp = (typeof OWNERSHIP_OPS)[number];

/** Latencies (ms) per operation, sent to the owner and through the non-owner. */
export type OwnershipLatencies = Record<OwnershipOp, { owner: number[]; forwarded: number[] }>;

const TIMEOUT_MS = 20_000;

function withTimeout<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer in ${TIMEOUT_MS} ms`)), TIMEOUT_MS);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

/** One instance as a client sees it: GraphQL over HTTP and a graphql-ws connection. */
function clientOf(server: ServerProcess, token: string) {
  const ws = createClient({
    url: `${server.url.replace(/^http/, "ws")}/graphql`,
    connectionParams: { authorization: `Bearer ${token}` },
    retryAttempts: 0,
    lazy: false,
  });
  const gql = (query: string, variables: Record<string, unknown>) =>
    withTimeout(server.gql(query, variables, token), query.slice(0, 40));
  /** Resolves with the run's final status when RunFinished arrives. */
  const finished = (runId: string) =>
    withTimeout(
      new Promise<string>((resolve, reject) => {
        const dispose = ws.subscribe(
          {
            query: `subscription($r: ID!) { runOutput(runId: $r) { __typename ... on RunFinished { status } } }`,
            variables: { r: runId },
          },
          {
            next: (value) => {
              const event = (value.data as any)?.runOutput;
              if (event?.__typename !== "RunFinished") return;
              dispose();
              resolve(event.status as string);
            },
            error: reject,
            complete: () => {},
          },
        );
      }),
      `runOutput of ${runId}`,
    );
  return { server, gql, finished, close: () => ws.dispose() };
}

/**
 * Measures `samples` of each operation on one branch of a new session, owned by `owner` (it takes the
 * branch's lease with the first write); `other` forwards. Checks first that `other` sees the branch's
 * live workspace on the owner (status "idle"), so its reads are the owner's, not the head snapshot's.
 */
export async function ownershipLatencies(
  owner: ServerProcess,
  other: ServerProcess,
  token: string,
  samples: number,
  warmup = 5,
): Promise<OwnershipLatencies> {
  const [a, b] = [clientOf(owner, token), clientOf(other, token)];
  try {
    const branch = (
      await a.gql(
        `mutation($f: JSON) { createSession(input: { title: "ownership", files: $f }) { mainBranch { id } } }`,
        { f: { "read.txt": "read me\n" } },
      )
    ).createSession.mainBranch.id as string;
    const ops: Record<OwnershipOp, (client: typeof a, i: number) => Promise<void>> = {
      writeFile: async (client, i) => {
        await client.gql(
          `mutation($b: ID!, $c: String!) { writeFile(branchId: $b, path: "written.txt", content: $c) { id } }`,
          { b: branch, c: `write ${i}\n` },
        );
      },
      "live-file read": async (client) => {
        const { branch: found } = await client.gql(
          `query($b: ID!) { branch(id: $b) { file(path: "read.txt") { content } } }`,
          { b: branch },
        );
        if (found?.file?.content !== "read me\n")
          throw new Error(`unexpected read: ${JSON.stringify(found)}`);
      },
      "exec true to its end": async (client) => {
        const run = (
          await client.gql(`mutation($b: ID!) { exec(branchId: $b, command: "true") { id } }`, { b: branch })
        ).exec.id as string;
        const status = await client.finished(run);
        if (status !== "SUCCEEDED") throw new Error(`exec true ended ${status}`);
      },
    };
    // The owner takes the lease (and starts the live sandbox); the other instance hears of it.
    await ops.writeFile(a, -1);
    for (let i = 0; ; i++) {
      const { branch: seen } = await b.gql(`query($b: ID!) { branch(id: $b) { status } }`, { b: branch });
      if (seen.status === "idle") break;
      if (i > 100)
        throw new Error(`the other instance never saw the owner's live workspace (${seen.status})`);
      await Bun.sleep(50);
    }
    const latencies = Object.fromEntries(
      OWNERSHIP_OPS.map((op) => [op, { owner: [] as number[], forwarded: [] as number[] }]),
    ) as OwnershipLatencies;
    for (let i = -warmup; i < samples; i++)
      for (const op of OWNERSHIP_OPS)
        for (const [client, side] of [
          [a, "owner"],
          [b, "forwarded"],
        ] as const) {
          const t0 = performance.now();
          await ops[op](client, i);
          if (i >= 0) latencies[op][side].push(performance.now() - t0);
        }
    return latencies;
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
}
