// Runs the fake ConTree API (scripts/fake-contree/) as a local server for development:
//
//   bun scripts/fake-contree.ts [--port 8765] [--token T] [--project P | --no-project]
//
// Prints the base URL and credentials (a client appends /v1 itself); Ctrl-C stops it and removes
// its data. Commands run under bubblewrap; without it every spawn fails (with the reason) and the rest works.
import { parseArgs } from "node:util";
import { startFakeContree } from "./fake-contree/index.ts";

const { values } = parseArgs({
  options: {
    port: { type: "string" },
    token: { type: "string" },
    project: { type: "string" },
    "no-project": { type: "boolean" },
    help: { type: "boolean", short: "h" },
  },
});

if (values.help) {
  console.log("usage: bun scripts/fake-contree.ts [--port N] [--token T] [--project P | --no-project]");
  process.exit(0);
}

const fake = await startFakeContree({
  port: values.port ? Number(values.port) : 0,
  token: values.token,
  project: values["no-project"] ? null : values.project,
});

console.log(`fake ConTree listening on ${fake.url} (API under ${fake.url}/v1)`);
console.log(`CONTREE_URL=${fake.url}`);
console.log(`CONTREE_TOKEN=${fake.token}`);
if (fake.project !== null) console.log(`CONTREE_PROJECT=${fake.project}`);
console.log("seed images: tag:busybox:latest, tag:ubuntu:latest");
if (fake.cannotRunProcesses) console.warn(`no processes (spawns end FAILED): ${fake.cannotRunProcesses}`);

let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  await fake.close();
  process.exit(0);
};
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
