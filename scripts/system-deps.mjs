#!/usr/bin/env node
// The system packages the platform uses, installed the way Playwright's `install --with-deps` does:
// bubblewrap (sandbox isolation) and git (sessions from repositories). Runs from npm's postinstall,
// prestart and pretest, so the README's two commands are enough on a fresh machine. When everything is
// there it costs a few stat calls. When something is missing and this process can install it (root
// with apt-get, dnf or apk) it does, saying so in one line; otherwise it prints the exact command and
// carries on (the server then starts with isolation "none" flagged in health; production refuses).
// Plain Node (no TypeScript, no dependencies): it runs before anything else is installed.
import { spawnSync } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { delimiter, join } from "node:path";

const PACKAGES = [
  { command: "bwrap", package: "bubblewrap", why: "sandbox isolation" },
  { command: "git", package: "git", why: "sessions from git repositories" },
];

const MANAGERS = [
  {
    name: "apt-get",
    steps: (pkgs) => [
      ["apt-get", "update", "-qq"],
      ["apt-get", "install", "-y", "-qq", "--no-install-recommends", ...pkgs],
    ],
    env: { DEBIAN_FRONTEND: "noninteractive" },
  },
  { name: "dnf", steps: (pkgs) => [["dnf", "install", "-y", "-q", ...pkgs]], env: {} },
  { name: "apk", steps: (pkgs) => [["apk", "add", "--no-cache", "-q", ...pkgs]], env: {} },
];

const SEARCH_PATH = [
  ...(process.env.PATH ?? "").split(delimiter),
  "/usr/local/sbin",
  "/usr/local/bin",
  "/usr/sbin",
  "/usr/bin",
  "/sbin",
  "/bin",
];

function which(command) {
  for (const dir of SEARCH_PATH) {
    if (!dir) continue;
    const path = join(dir, command);
    try {
      accessSync(path, constants.X_OK);
      return path;
    } catch {}
  }
  return null;
}

const say = (line) => process.stderr.write(`opencode.cloud: ${line}\n`);

function main() {
  if (process.env.OPENCODE_CLOUD_SKIP_SYSTEM_DEPS === "1" || process.platform !== "linux") return;
  const missing = PACKAGES.filter((p) => !which(p.command));
  if (missing.length === 0) return;
  const names = missing.map((p) => p.package);
  const what = missing.map((p) => `${p.package} (${p.why})`).join(", ");
  const manager = MANAGERS.find((m) => which(m.name));
  const isRoot = typeof process.getuid === "function" && process.getuid() === 0;

  if (!manager || !isRoot) {
    const command = manager
      ? manager
          .steps(names)
          .map((argv) => `sudo ${argv.join(" ")}`)
          .join(" && ")
      : `install ${names.join(" ")} with your system's package manager`;
    say(`missing system packages: ${what}. Run: ${command}`);
    say("until then commands run without isolation in development, and production refuses to start");
    return;
  }

  say(`installing ${what} with ${manager.name} (one time)`);
  for (const argv of manager.steps(names)) {
    const result = spawnSync(argv[0], argv.slice(1), {
      stdio: ["ignore", "ignore", "pipe"],
      env: { ...process.env, ...manager.env },
      timeout: 10 * 60_000,
    });
    if (result.status !== 0) {
      const detail = (result.stderr?.toString() ?? String(result.error ?? ""))
        .trim()
        .split("\n")
        .slice(-3)
        .join(" | ");
      say(
        `${argv.join(" ")} failed (${detail || `exit ${result.status}`}); install ${names.join(" ")} by hand`,
      );
      return;
    }
  }
  const still = missing.filter((p) => !which(p.command)).map((p) => p.package);
  if (still.length > 0) say(`still missing after the install: ${still.join(", ")}`);
}

main();
