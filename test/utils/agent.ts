// A real server whose agent runs use the scripted fake model, with a signed-up user: the setup of
// every agent end-to-end test.
import { opencodeBinary } from "../../agent/opencode-binary.ts";
import { type FakeModel, type Scenario, startFakeModel } from "../../scripts/fake-model.ts";
import { startTestServer, type TestServer } from "./server.ts";

export interface AgentHarness {
  fake: FakeModel;
  server: TestServer;
  token: string;
  /** bubblewrap and the opencode binary are here (agent runs can really happen). */
  available: boolean;
  /** GraphQL as the signed-up user; throws on errors. */
  gql(query: string, variables?: Record<string, unknown>): Promise<Record<string, any>>;
  close(): Promise<void>;
}

export async function startAgentHarness(
  scenarios: Scenario[],
  env: Record<string, string> = {},
): Promise<AgentHarness> {
  const fake = startFakeModel({ apiKey: "sk-platform", scenarios });
  const server = await startTestServer({
    AGENT_MODEL_BASE_URL: fake.baseURL,
    AGENT_MODEL_API_KEY: "sk-platform",
    AGENT_MODEL: "fake-model",
    // The platform's fake is trusted (operator config); users' own fake models (setModelKey) also
    // run on loopback, which the outbound policy refuses unless the operator allows it.
    OUTBOUND_ALLOW_HOSTS: "127.0.0.1",
    ...env,
  });
  const token = (await server.signUp()).token;
  const health = (await server.gql("{ health { isolation } }")).data!.health;
  return {
    fake,
    server,
    token,
    available: health.isolation === "bubblewrap" && opencodeBinary() !== null,
    async gql(query, variables = {}) {
      const res = await server.gql(query, variables, token);
      if (res.errors) throw new Error(JSON.stringify(res.errors));
      return res.data!;
    },
    async close() {
      await server.close();
      await fake.close();
    },
  };
}
