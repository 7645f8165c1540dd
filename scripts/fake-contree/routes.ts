// The route table of the fake: exactly the 24 operations of the real ConTree API (§2 of
// contree-api.md), as method + path template under /v1. Nothing else is served: no image or file
// deletion, no ports/URLs, no snapshot of a running operation. The contract test compares this
// table with the documented one.

export type RouteName =
  | "whoami"
  | "listImages"
  | "updateImageTag"
  | "deleteImageTag"
  | "importImage"
  | "listFiles"
  | "uploadFile"
  | "getFile"
  | "checkFile"
  | "spawnInstance"
  | "listOperations"
  | "getOperation"
  | "cancelOperation"
  | "operationEvents"
  | "createSubprocess"
  | "getSubprocess"
  | "killSubprocess"
  | "subprocessStdin"
  | "inspectByTag"
  | "inspectImage"
  | "inspectList"
  | "inspectDownload"
  | "inspectCheckFile"
  | "inspectArchive"
  | "inspectCheckArchive"
  | "inspectGrep";

export interface RouteSpec {
  /** Row number in §2's endpoint table (GET and HEAD of one row share it). */
  op: number;
  name: RouteName;
  method: "GET" | "HEAD" | "POST" | "PATCH" | "DELETE";
  /** Path template, `{name}` matching one non-empty segment. */
  path: string;
}

export const ROUTES: readonly RouteSpec[] = [
  { op: 1, name: "whoami", method: "GET", path: "/v1/whoami" },
  { op: 2, name: "listImages", method: "GET", path: "/v1/images" },
  { op: 3, name: "updateImageTag", method: "PATCH", path: "/v1/images/{uuid}/tag" },
  { op: 4, name: "deleteImageTag", method: "DELETE", path: "/v1/images/{uuid}/tag" },
  { op: 5, name: "importImage", method: "POST", path: "/v1/images/import" },
  { op: 6, name: "listFiles", method: "GET", path: "/v1/files" },
  { op: 7, name: "uploadFile", method: "POST", path: "/v1/files" },
  { op: 8, name: "getFile", method: "GET", path: "/v1/files/{sha256}" },
  { op: 9, name: "checkFile", method: "HEAD", path: "/v1/files/{sha256}" },
  { op: 10, name: "spawnInstance", method: "POST", path: "/v1/instances" },
  { op: 11, name: "listOperations", method: "GET", path: "/v1/operations" },
  { op: 12, name: "getOperation", method: "GET", path: "/v1/operations/{id}" },
  { op: 13, name: "cancelOperation", method: "DELETE", path: "/v1/operations/{id}" },
  { op: 14, name: "operationEvents", method: "GET", path: "/v1/operations/{id}/events" },
  { op: 15, name: "createSubprocess", method: "POST", path: "/v1/operations/{id}/subprocesses" },
  { op: 16, name: "getSubprocess", method: "GET", path: "/v1/operations/{id}/subprocesses/{spid}" },
  { op: 17, name: "killSubprocess", method: "DELETE", path: "/v1/operations/{id}/subprocesses/{spid}" },
  { op: 18, name: "subprocessStdin", method: "POST", path: "/v1/operations/{id}/subprocesses/{spid}/stdin" },
  { op: 19, name: "inspectByTag", method: "GET", path: "/v1/inspect/" },
  { op: 20, name: "inspectImage", method: "GET", path: "/v1/inspect/{uuid}/" },
  { op: 21, name: "inspectList", method: "GET", path: "/v1/inspect/{uuid}/list" },
  { op: 22, name: "inspectDownload", method: "GET", path: "/v1/inspect/{uuid}/download" },
  { op: 22, name: "inspectCheckFile", method: "HEAD", path: "/v1/inspect/{uuid}/download" },
  { op: 23, name: "inspectArchive", method: "GET", path: "/v1/inspect/{uuid}/archive" },
  { op: 23, name: "inspectCheckArchive", method: "HEAD", path: "/v1/inspect/{uuid}/archive" },
  { op: 24, name: "inspectGrep", method: "GET", path: "/v1/inspect/{uuid}/grep" },
];

export type RouteMatch =
  | { route: RouteSpec; params: Record<string, string> }
  | { status: 404 }
  | { status: 405; allow: string[] };

function matchPath(template: string, pathname: string): Record<string, string> | null {
  const want = template.split("/");
  const got = pathname.split("/");
  if (want.length !== got.length) return null;
  const params: Record<string, string> = {};
  for (let i = 0; i < want.length; i++) {
    const w = want[i]!;
    const g = got[i]!;
    if (w.startsWith("{") && w.endsWith("}")) {
      if (!g) return null;
      try {
        params[w.slice(1, -1)] = decodeURIComponent(g);
      } catch {
        return null;
      }
    } else if (w !== g) return null;
  }
  return params;
}

/** The route for a request; 404 for an unknown path, 405 (with Allow) for a known path and wrong method. */
export function matchRoute(method: string, pathname: string): RouteMatch {
  const allow: string[] = [];
  for (const route of ROUTES) {
    const params = matchPath(route.path, pathname);
    if (!params) continue;
    if (route.method === method) return { route, params };
    allow.push(route.method);
  }
  return allow.length ? { status: 405, allow } : { status: 404 };
}
