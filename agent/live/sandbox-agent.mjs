// Runs inside a branch's sandbox (plain Node, no dependencies) for as long as the branch's agent is
// live: it starts `opencode serve` on the sandbox's own loopback, proxies the model traffic from a
// loopback port to the model gateway's unix socket (the sandbox has no other network), signing each
// request with the server's gateway token (opencode's config holds a placeholder, so the token is
// not in anything opencode serves, GET /config included), and relays a unix socket in a
// host-visible directory to opencode's port, which is how the platform reaches it.
// Prints one line {"ready":true} on stdout once both relays and opencode listen; exits with opencode.
// Environment: OCC_OPENCODE (binary), OCC_MODEL_PORT, OCC_GATEWAY_SOCKET, OCC_GATEWAY_TOKEN,
// OCC_AGENT_SOCKET, plus opencode's own variables (OPENCODE_SERVER_PASSWORD, OPENCODE_CONFIG_CONTENT, XDG_*).
import { spawn } from "node:child_process";
import { rmSync } from "node:fs";
import http from "node:http";
import net from "node:net";

const env = { ...process.env };
const token = env.OCC_GATEWAY_TOKEN;
delete env.OCC_GATEWAY_TOKEN; // opencode (and the tools it runs) get the environment without it
const fail = (message) => {
  process.stderr.write(`sandbox-agent: ${message}\n`);
  process.exit(70);
};

/** Pipes every connection accepted by `server` to a new connection made by `connect`. */
const relay = (connect) =>
  net.createServer((client) => {
    const upstream = connect();
    client.pipe(upstream).pipe(client);
    const close = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on("error", close);
    upstream.on("error", close);
    client.on("close", close);
    upstream.on("close", close);
  });

const listen = (server, ...args) =>
  new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(...args, resolve);
  });

// 1. The model: opencode's provider baseURL points here; the gateway checks the token added here.
const model = http.createServer((req, res) => {
  const headers = { ...req.headers, authorization: `Bearer ${token}` };
  delete headers.host;
  const upstream = http.request(
    { socketPath: env.OCC_GATEWAY_SOCKET, path: req.url, method: req.method, headers },
    (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    },
  );
  upstream.on("error", () => {
    if (!res.headersSent) res.writeHead(502, { "content-type": "application/json" });
    res.end('{"error":{"message":"The model gateway could not be reached"}}');
  });
  res.on("close", () => upstream.destroy());
  req.pipe(upstream);
});
await listen(model, Number(env.OCC_MODEL_PORT), "127.0.0.1").catch((error) =>
  fail(`model relay: ${error.message}`),
);

// 2. opencode itself, on loopback only, behind the per-branch password it was given.
const server = spawn(env.OCC_OPENCODE, ["serve", "--port", "0", "--hostname", "127.0.0.1"], {
  env,
  stdio: ["ignore", "pipe", "inherit"],
});
const stop = () => server.kill("SIGTERM");
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
server.on("exit", (code, signal) => process.exit(code ?? (signal ? 128 : 1)));
const port = await new Promise((resolve) => {
  let seen = "";
  server.stdout.on("data", (data) => {
    seen += data;
    const m = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(seen);
    if (m) {
      resolve(Number(m[1]));
      seen = "";
    } else if (seen.length > 65536) seen = seen.slice(-4096);
  });
});

// 3. The platform's way in: a unix socket in a directory the host sees.
rmSync(env.OCC_AGENT_SOCKET, { force: true });
await listen(
  relay(() => net.connect(port, "127.0.0.1")),
  env.OCC_AGENT_SOCKET,
).catch((error) => fail(`agent relay: ${error.message}`));
process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
