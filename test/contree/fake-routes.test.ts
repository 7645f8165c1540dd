// The fake ConTree's route table is exactly the real API's surface (contree-api.md §2, 24
// operations): nothing more, so client code cannot come to depend on an endpoint the real service
// lacks (image or file deletion, ports/URLs, snapshots of a running VM).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type FakeContree, ROUTES, startFakeContree } from "../../scripts/fake-contree/index.ts";

// §2's table: row number, method(s), path under /v1.
const DOCUMENTED: [number, string[], string][] = [
  [1, ["GET"], "/whoami"],
  [2, ["GET"], "/images"],
  [3, ["PATCH"], "/images/{uuid}/tag"],
  [4, ["DELETE"], "/images/{uuid}/tag"],
  [5, ["POST"], "/images/import"],
  [6, ["GET"], "/files"],
  [7, ["POST"], "/files"],
  [8, ["GET"], "/files/{sha256}"],
  [9, ["HEAD"], "/files/{sha256}"],
  [10, ["POST"], "/instances"],
  [11, ["GET"], "/operations"],
  [12, ["GET"], "/operations/{id}"],
  [13, ["DELETE"], "/operations/{id}"],
  [14, ["GET"], "/operations/{id}/events"],
  [15, ["POST"], "/operations/{id}/subprocesses"],
  [16, ["GET"], "/operations/{id}/subprocesses/{spid}"],
  [17, ["DELETE"], "/operations/{id}/subprocesses/{spid}"],
  [18, ["POST"], "/operations/{id}/subprocesses/{spid}/stdin"],
  [19, ["GET"], "/inspect/"],
  [20, ["GET"], "/inspect/{uuid}/"],
  [21, ["GET"], "/inspect/{uuid}/list"],
  [22, ["GET", "HEAD"], "/inspect/{uuid}/download"],
  [23, ["GET", "HEAD"], "/inspect/{uuid}/archive"],
  [24, ["GET"], "/inspect/{uuid}/grep"],
];

describe("route table", () => {
  test("is exactly the 24 documented operations", () => {
    const expected = DOCUMENTED.flatMap(([op, methods, path]) =>
      methods.map((m) => `${op} ${m} /v1${path}`),
    ).sort();
    const actual = ROUTES.map((r) => `${r.op} ${r.method} ${r.path}`).sort();
    expect(actual).toEqual(expected);
    expect(new Set(ROUTES.map((r) => r.op)).size).toBe(24);
    expect(new Set(ROUTES.map((r) => r.name)).size).toBe(ROUTES.length);
  });
});

describe("endpoints the real service lacks", () => {
  let fake: FakeContree;
  let image: string;
  beforeAll(async () => {
    fake = await startFakeContree();
    image = await fake.seedImage({ "/hello.txt": "hi\n" });
  });
  afterAll(() => fake.close());

  const call = (method: string, path: string) =>
    fetch(`${fake.url}${path}`, {
      method,
      headers: { Authorization: `Bearer ${fake.token}`, Project: fake.project! },
      redirect: "manual",
    });

  test.each([
    ["DELETE", "/v1/images/{image}"],
    ["GET", "/v1/images/{image}"],
    ["DELETE", "/v1/files/{sha}"],
    ["POST", "/v1/instances/{op}/ports"],
    ["GET", "/v1/instances/{op}/url"],
    ["POST", "/v1/operations/{op}/snapshot"],
    ["POST", "/v1/operations/{op}/ports"],
    ["GET", "/v1/inspect/{image}"],
    ["PUT", "/v1/images/{image}/tag"],
    ["GET", "/whoami"],
    ["GET", "/v2/whoami"],
  ])("%s %s answers 404/405 with an error body", async (method, template) => {
    const path = template
      .replace("{image}", image)
      .replace("{sha}", "a".repeat(64))
      .replace("{op}", "00000000-0000-4000-8000-000000000000");
    const res = await call(method, path);
    expect([404, 405]).toContain(res.status);
    const body = await res.json();
    expect(body.status).toBe(res.status);
    expect(typeof body.error).toBe("string");
  });

  test("a known path with the wrong method is 405 with Allow", async () => {
    const wrong = await call("PUT", "/v1/instances");
    expect(wrong.status).toBe(405);
    expect(wrong.headers.get("allow")).toBe("POST");
  });
});
