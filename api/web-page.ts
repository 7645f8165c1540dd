// The live session page at /app: static files from web/session-page/ and the graphql-ws browser client
// from node_modules, served as they are (ES modules, no bundler, no CDN), the same on Bun and Deno.
// The page signs in and talks to /graphql like any other client; serving it needs no credential.
import { readdir, readFile } from "node:fs/promises";
import { dirname, extname, join } from "node:path";
import { fileURLToPath } from "node:url";

const PAGE_DIR = fileURLToPath(new URL("../web/session-page/", import.meta.url));
// graphql-ws's browser build: dist/client.js and the one chunk it imports (no other dependencies).
const GRAPHQL_WS_DIR = dirname(fileURLToPath(import.meta.resolve("graphql-ws/client")));
const VENDOR_PREFIX = "vendor/graphql-ws/";

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml; charset=utf-8",
};

// Scripts, styles and sockets from this origin only; nothing inline, nothing framed.
const PAGE_POLICY = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

interface Asset {
  body: Uint8Array<ArrayBuffer>;
  type: string;
}

/** Serves GET /app (the page) and /app/<file>; null for any other path. */
export function createWebPage(): (request: Request, url: URL) => Promise<Response | null> {
  // Loaded once, on the first request: the page's own files by name (no paths, so no traversal).
  let assets: Promise<Map<string, Asset>> | undefined;
  const load = async () => {
    const map = new Map<string, Asset>();
    const add = async (name: string, path: string, type: string) =>
      map.set(name, { body: new Uint8Array(await readFile(path)), type });
    for (const name of await readdir(PAGE_DIR)) {
      const type = TYPES[extname(name)];
      if (type && !name.endsWith(".d.ts")) await add(name, join(PAGE_DIR, name), type);
    }
    for (const name of await readdir(GRAPHQL_WS_DIR))
      if (name === "client.js" || /^common-[\w-]+\.js$/.test(name))
        await add(VENDOR_PREFIX + name, join(GRAPHQL_WS_DIR, name), TYPES[".js"]!);
    return map;
  };

  return async (request, url) => {
    if (url.pathname !== "/app" && !url.pathname.startsWith("/app/")) return null;
    if (request.method !== "GET" && request.method !== "HEAD") return null;
    const name = url.pathname.slice("/app/".length) || "index.html";
    assets ??= load().catch((error) => {
      assets = undefined;
      throw error;
    });
    const asset = (await assets).get(name);
    if (!asset) return null;
    const headers: Record<string, string> = {
      "content-type": asset.type,
      "cache-control": "no-cache",
      "x-content-type-options": "nosniff",
      "referrer-policy": "no-referrer",
    };
    if (asset.type.startsWith("text/html")) headers["content-security-policy"] = PAGE_POLICY;
    return new Response(request.method === "HEAD" ? null : asset.body, { headers });
  };
}
