// graphql-http's serverAudits check the GraphQL-over-HTTP spec (MUST and SHOULD) against the real server.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { serverAudits } from "graphql-http";
import { startTestServer, type TestServer } from "../utils/server.ts";

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(() => server.close());

for (const audit of serverAudits({ url: () => `${server.url}/graphql`, fetchFn: fetch })) {
  test(`${audit.id} ${audit.name}`, async () => {
    const result = await audit.fn();
    if (result.status !== "ok") {
      const body = result.response ? await result.response.text().catch(() => "") : "";
      throw new Error(`${result.status}: ${result.reason}\n${body.slice(0, 500)}`);
    }
    expect(result.status).toBe("ok");
  });
}
