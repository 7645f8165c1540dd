// Who may choose whether the agent asks, and where it can: Session.agentPermissions starts ALLOW; only
// owners change it (editors and viewers FORBIDDEN, strangers NOT_FOUND, read-only keys FORBIDDEN);
// ASK is refused (NOT_SUPPORTED) on a provider whose agent runs per turn out of reach (contree), ALLOW
// is fine there; answerPermission on a run that is not running is CONFLICT, and its message is bounded.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { type FakeContree, startFakeContree } from "../../scripts/fake-contree/index.ts";
import { codeOf, startTestServer, type TestServer } from "../utils/server.ts";

let contree: FakeContree;
let server: TestServer;
beforeAll(async () => {
  contree = await startFakeContree({ delays: { pendingMs: 5, assignedMs: 5 } });
  server = await startTestServer({
    CONTREE_URL: contree.url,
    CONTREE_API_KEY: contree.token,
    CONTREE_PROJECT: contree.project ?? "",
  });
});
afterAll(async () => {
  await server?.close();
  await contree?.close();
});

const SET = `mutation($s: ID!, $m: AgentPermissionMode!) { setAgentPermissions(sessionId: $s, mode: $m) { id agentPermissions } }`;

test("only owners set the mode; ASK needs a live agent", async () => {
  const owner = await server.signUp();
  const [editor, viewer, stranger] = [await server.signUp(), await server.signUp(), await server.signUp()];
  const create = async (provider: string) =>
    (
      await server.gql(
        `mutation($p: String) { createSession(input: { title: "p", provider: $p }) { id agentPermissions mainBranch { id } } }`,
        { p: provider },
        owner.token,
      )
    ).data!.createSession;
  const local = await create("local");
  expect(local.agentPermissions).toBe("ALLOW");
  for (const [who, role] of [
    [editor, "EDITOR"],
    [viewer, "VIEWER"],
  ] as const)
    await server.gql(
      `mutation($s: ID!, $e: String!, $r: Role!) { shareSession(sessionId: $s, email: $e, role: $r) { role } }`,
      { s: local.id, e: who.email, r: role },
      owner.token,
    );
  expect(codeOf(await server.gql(SET, { s: local.id, m: "ASK" }, editor.token))).toBe("FORBIDDEN");
  expect(codeOf(await server.gql(SET, { s: local.id, m: "ASK" }, viewer.token))).toBe("FORBIDDEN");
  const strangers = await server.gql(SET, { s: local.id, m: "ASK" }, stranger.token);
  expect(codeOf(strangers)).toBe("NOT_FOUND");
  expect(strangers.data?.setAgentPermissions ?? null).toBeNull();
  const key = (
    await server.gql(`mutation { createApiKey(name: "ro", scopes: ["read"]) { secret } }`, {}, owner.token)
  ).data!.createApiKey.secret;
  expect(codeOf(await server.gql(SET, { s: local.id, m: "ASK" }, key))).toBe("FORBIDDEN");
  // Nothing above changed it; the owner does.
  const read = `query($s: ID!) { session(id: $s) { agentPermissions } }`;
  expect((await server.gql(read, { s: local.id }, viewer.token)).data!.session.agentPermissions).toBe(
    "ALLOW",
  );
  expect((await server.gql(SET, { s: local.id, m: "ASK" }, owner.token)).data!.setAgentPermissions).toEqual({
    id: local.id,
    agentPermissions: "ASK",
  });
  expect((await server.gql(read, { s: local.id }, viewer.token)).data!.session.agentPermissions).toBe("ASK");

  // contree's agent is `opencode run` in a VM nobody can reach mid-turn: it cannot ask.
  const vm = await create("contree");
  const refused = await server.gql(SET, { s: vm.id, m: "ASK" }, owner.token);
  expect(codeOf(refused)).toBe("NOT_SUPPORTED");
  expect((await server.gql(read, { s: vm.id }, owner.token)).data!.session.agentPermissions).toBe("ALLOW");
  expect((await server.gql(SET, { s: vm.id, m: "ALLOW" }, owner.token)).errors).toBeUndefined();

  // answerPermission: a finished run has nothing to answer; a huge message is refused before anything.
  const run = (
    await server.gql(
      `mutation($b: ID!) { exec(branchId: $b, command: "true") { id } }`,
      { b: local.mainBranch.id },
      owner.token,
    )
  ).data!.exec;
  for (let i = 0; i < 400; i++) {
    const r = (await server.gql(`query($r: ID!) { run(id: $r) { status } }`, { r: run.id }, owner.token))
      .data!.run;
    if (!["QUEUED", "RUNNING"].includes(r.status)) break;
    await Bun.sleep(25);
  }
  const ANSWER = `mutation($r: ID!, $m: String) { answerPermission(runId: $r, permissionId: "per_x", reply: ONCE, message: $m) { id } }`;
  expect(codeOf(await server.gql(ANSWER, { r: run.id }, editor.token))).toBe("CONFLICT");
  expect(codeOf(await server.gql(ANSWER, { r: run.id, m: "x".repeat(3000) }, editor.token))).toBe(
    "BAD_USER_INPUT",
  );
  expect(codeOf(await server.gql(ANSWER, { r: run.id }, viewer.token))).toBe("FORBIDDEN");
}, 60_000);
