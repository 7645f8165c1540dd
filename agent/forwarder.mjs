// Runs inside the sandbox (plain Node, no dependencies): relays 127.0.0.1:<port> to the model
// gateway's unix socket, which the platform binds into the sandbox. The sandbox has no other network.
//   node forwarder.mjs <port> <socket path> [ready file, written once listening]
import { writeFileSync } from "node:fs";
import net from "node:net";

const [port, socketPath, readyFile] = [Number(process.argv[2]), process.argv[3], process.argv[4]];
net
  .createServer((client) => {
    const upstream = net.connect(socketPath);
    client.pipe(upstream).pipe(client);
    const close = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on("error", close);
    upstream.on("error", close);
  })
  .listen(port, "127.0.0.1", () => {
    if (readyFile) writeFileSync(readyFile, String(process.pid));
  });
