// Input a filesystem or a URL decoder would choke on is refused up front as BAD_USER_INPUT (400 at
// the request level), never answered as INTERNAL/500: file maps of createSession (long names, a file
// under a file, bad modes, base64 that is not), paths of writeFile and file reads, and malformed
// percent-encoding in routes.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { codeOf, startTestServer, type TestServer } from "../utils/server.ts";
import { gqlOk } from "../utils/session-fixture.ts";

let server: TestServer;
let token: string;
let branchId: string;
let snapshotId: string;

const CREATE = `mutation($files: JSON) { createSession(input: { title: "bad", files: $files }) { id mainBranch { id head { id } } } }`;
const LEAKS =
  /\bat .*\.(ts|js):\d+|SQLITE|sqlite|drizzle|libsql|node_modules|ENAMETOOLONG|ENOTDIR|EEXIST|errno/i;

beforeAll(async () => {
  server = await startTestServer();
  token = (await server.signUp()).token;
  const s = (await gqlOk(server, token, CREATE, { files: { "f.txt": "hello\n", "dir/g.txt": "g" } }))
    .createSession;
  branchId = s.mainBranch.id;
  snapshotId = s.mainBranch.head.id;
});
afterAll(() => server.close());

async function expectBadInput(query: string, variables: Record<string, unknown>) {
  const res = await server.gql(query, variables, token);
  expect(res.text).not.toMatch(LEAKS);
  expect({ code: codeOf(res), message: res.errors?.[0]?.message }).toMatchObject({ code: "BAD_USER_INPUT" });
  return res;
}

describe("createSession file maps", () => {
  const cases: [string, unknown][] = [
    ["a 300-byte name", { ["n".repeat(300)]: "x" }],
    ["a 300-byte directory name", { [`${"d".repeat(300)}/f`]: "x" }],
    ["a name of 128 two-byte characters (256 bytes)", { ["é".repeat(128)]: "x" }],
    ["a path past the length limit", { [`${"abcdefgh/".repeat(400)}f`]: "x" }],
    ["a file under a file", { a: "x", "a/b": "y" }],
    ["a file under a file, deeper and in the other order", { "a/b/c": "y", "a/b": "x" }],
    ["two spellings of one path", { a: "x", "./a": "y" }],
    ["mode -1", { a: { content: "x", mode: -1 } }],
    ["mode 1e12", { a: { content: "x", mode: 1e12 } }],
    ['mode "rwx"', { a: { content: "x", mode: "rwx" } }],
    ["mode 4.5", { a: { content: "x", mode: 4.5 } }],
    ["a setuid mode", { a: { content: "x", mode: 0o4755 } }],
    ["a setgid mode", { a: { content: "x", mode: 0o2755 } }],
    ["an unknown encoding", { a: { content: "x", encoding: "rot13" } }],
    ["base64 content that is not base64", { a: { content: "!!!", encoding: "base64" } }],
    ["base64 with a stray character", { a: { content: "aGVs*bG8=", encoding: "base64" } }],
    ["base64 one character too long", { a: { content: "aGVsbG8=a", encoding: "base64" } }],
    ["a NUL in a path", { "a\u0000b": "x" }],
    ["a path leaving the workspace", { "../../etc/passwd": "x" }],
    ["an empty path", { "": "x" }],
    ["the root as a path", { "/": "x" }],
  ];
  for (const [name, files] of cases) {
    test(`${name} is BAD_USER_INPUT`, async () => {
      await expectBadInput(CREATE, { files });
    });
  }

  test("invalid base64 names the entry; wrapped, unpadded and URL-safe base64 are read", async () => {
    const res = await expectBadInput(CREATE, {
      files: { "ok.txt": "fine", "img/logo.png": { content: "!!!", encoding: "base64" } },
    });
    expect(res.errors?.[0]?.message).toContain('files["img/logo.png"]');
    expect(res.errors?.[0]?.message).toContain("base64");
    const s = (
      await gqlOk(server, token, CREATE, {
        files: {
          wrapped: { content: "aGVs\nbG8=\n", encoding: "base64" },
          unpadded: { content: "aGVsbG8", encoding: "base64" },
          urlsafe: { content: "-_-_", encoding: "base64" },
        },
      })
    ).createSession;
    const read = async (p: string) =>
      (
        await gqlOk(
          server,
          token,
          "query($s: ID!, $p: String!) { snapshot(id: $s) { file(path: $p) { content encoding } } }",
          {
            s: s.mainBranch.head.id,
            p,
          },
        )
      ).snapshot.file;
    expect(await read("wrapped")).toEqual({ content: "hello", encoding: "utf8" });
    expect(await read("unpadded")).toEqual({ content: "hello", encoding: "utf8" });
    expect(await read("urlsafe")).toEqual({
      content: Buffer.from([0xfb, 0xff, 0xbf]).toString("base64"),
      encoding: "base64",
    });
  });

  test("the limits themselves are fine: a 255-byte name, mode 0o755, a sticky directory bit", async () => {
    const name = "n".repeat(255);
    const s = (
      await gqlOk(server, token, CREATE, {
        files: {
          [name]: "x",
          "bin/run": { content: "#!/bin/sh\n", mode: 0o755 },
          t: { content: "", mode: 0o1644 },
        },
      })
    ).createSession;
    const files = (
      await gqlOk(server, token, 'query($s: ID!) { snapshot(id: $s) { files(path: "bin") { path mode } } }', {
        s: s.mainBranch.head.id,
      })
    ).snapshot.files;
    expect(files).toEqual([{ path: "bin/run", mode: 0o755 }]);
    const file = (
      await gqlOk(
        server,
        token,
        "query($b: ID!, $p: String!) { branch(id: $b) { file(path: $p) { size } } }",
        {
          b: s.mainBranch.id,
          p: name,
        },
      )
    ).branch.file;
    expect(file).toEqual({ size: 1 });
  });
});

describe("paths of writeFile and file reads", () => {
  const WRITE = 'mutation($b: ID!, $p: String!) { writeFile(branchId: $b, path: $p, content: "x") { id } }';
  const bad: [string, string][] = [
    ["a 300-byte name", "n".repeat(300)],
    ["a NUL", "a\u0000b"],
    ["a path past the length limit", `${"abcdefgh/".repeat(400)}f`],
    ["a path leaving the workspace", "../x"],
    ["an empty path", ""],
  ];
  for (const [name, path] of bad) {
    test(`writeFile with ${name} is BAD_USER_INPUT`, async () => {
      await expectBadInput(WRITE, { b: branchId, p: path });
    });
    test(`branch file/files with ${name} are BAD_USER_INPUT`, async () => {
      if (path !== "") {
        await expectBadInput("query($b: ID!, $p: String!) { branch(id: $b) { file(path: $p) { size } } }", {
          b: branchId,
          p: path,
        });
      }
      if (path !== "") {
        await expectBadInput("query($b: ID!, $p: String) { branch(id: $b) { files(path: $p) { path } } }", {
          b: branchId,
          p: path,
        });
      }
    });
    test(`snapshot file/files with ${name} are not INTERNAL`, async () => {
      for (const q of [
        "query($s: ID!, $p: String!) { snapshot(id: $s) { file(path: $p) { size } } }",
        "query($s: ID!, $p: String) { snapshot(id: $s) { files(path: $p) { path } } }",
      ]) {
        const res = await server.gql(q, { s: snapshotId, p: path }, token);
        expect(res.text).not.toMatch(LEAKS);
        expect(codeOf(res) ?? "none").not.toBe("INTERNAL");
      }
    });
  }

  test("writeFile under a file, or over a directory, is BAD_USER_INPUT", async () => {
    await expectBadInput(WRITE, { b: branchId, p: "f.txt/inside" });
    await expectBadInput(WRITE, { b: branchId, p: "f.txt/deeper/inside" });
    await expectBadInput(WRITE, { b: branchId, p: "dir" });
    // ...and the branch still works afterwards.
    await gqlOk(server, token, WRITE, { b: branchId, p: "dir/ok.txt" });
  });
});

describe("routes", () => {
  test("malformed percent-encoding in /sessions/<id>/tree.svg is a 400 BAD_USER_INPUT", async () => {
    for (const path of ["/sessions/%E0%A4%A/tree.svg", "/sessions/%/tree.svg", "/sessions/%C0%80/tree.svg"]) {
      const res = await fetch(`${server.url}${path}`, { headers: { authorization: `Bearer ${token}` } });
      const text = await res.text();
      expect({ path, status: res.status }).toEqual({ path, status: 400 });
      expect(codeOf(JSON.parse(text))).toBe("BAD_USER_INPUT");
      expect(text).not.toMatch(LEAKS);
    }
  });

  test("GET /graphql and form bodies with variables that are not JSON are a 400 BAD_USER_INPUT", async () => {
    const query = encodeURIComponent("query($id: ID!) { session(id: $id) { id } }");
    const auth = { authorization: `Bearer ${token}` };
    const requests: [string, RequestInit][] = [
      [`/graphql?query=${query}&variables=%E0%A4%A`, { headers: auth }],
      [`/graphql?query=${query}&variables=%7B`, { headers: auth }],
      [`/graphql?query=${query}&extensions=nope`, { headers: auth }],
      [
        "/graphql",
        {
          method: "POST",
          headers: { ...auth, "content-type": "application/x-www-form-urlencoded" },
          body: `query=${query}&variables=%7B%22id%22`,
        },
      ],
    ];
    for (const [path, init] of requests) {
      const res = await fetch(`${server.url}${path}`, init);
      const text = await res.text();
      expect({ path, status: res.status, code: codeOf(JSON.parse(text)) }).toEqual({
        path,
        status: 400,
        code: "BAD_USER_INPUT",
      });
      expect(text).not.toMatch(LEAKS);
    }
  });

  test("a well-formed but unknown session id in tree.svg is NOT_FOUND", async () => {
    const res = await fetch(`${server.url}/sessions/${encodeURIComponent("ses_ü")}/tree.svg`, {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(res.status).toBe(404);
    expect(codeOf(await res.json())).toBe("NOT_FOUND");
  });
});

describe("forks the fuzzer found", () => {
  test("two forks without a name in one request (or at once) each get a branch of their own", async () => {
    // One request shares its loaders' cache: the second fork used to pick the first one's name and fail
    // on the unique index with INTERNAL. Concurrent requests could race the same way.
    const res = await server.gql(
      "mutation($s: ID!) { a: fork(snapshotId: $s) { name } b: fork(snapshotId: $s) { name } }",
      { s: snapshotId },
      token,
    );
    expect(codeOf(res) ?? "ok").toBe("ok");
    expect(res.data!.a.name).not.toBe(res.data!.b.name);
    const forks = await Promise.all(
      Array.from({ length: 6 }, () =>
        server.gql("mutation($s: ID!) { fork(snapshotId: $s) { name } }", { s: snapshotId }, token),
      ),
    );
    expect(forks.map((f) => codeOf(f) ?? "ok")).toEqual(Array(6).fill("ok"));
    expect(new Set(forks.map((f) => f.data!.fork.name)).size).toBe(6);
  });

  test("two forks with the same name in one request: one branch, then CONFLICT", async () => {
    const res = await server.gql(
      `mutation($s: ID!) { a: fork(snapshotId: $s, name: "twin") { name } b: fork(snapshotId: $s, name: "twin") { name } }`,
      { s: snapshotId },
      token,
    );
    // (fork is non-null, so b's error nulls the whole reply; a's branch was made all the same.)
    expect(res.errors?.map((e) => [e.path?.[0], e.extensions?.code])).toEqual([["b", "CONFLICT"]]);
    const names = (
      await gqlOk(server, token, "query($b: ID!) { branch(id: $b) { session { branches { name } } } }", {
        b: branchId,
      })
    ).branch.session.branches.map((b: { name: string }) => b.name);
    expect(names.filter((n: string) => n === "twin")).toEqual(["twin"]);
  });
});
