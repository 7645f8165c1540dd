#!/usr/bin/env node
// The system packages the platform uses, installed the way Playwright's `install --with-deps` does:
// bubblewrap (sandbox isolation) and git (sessions from repositories), plus, for the tests only,
// redis-server (the Redis/Upstash shared state; a deployment brings its own Redis, or none) and
// chromium (the session page's browser tests drive it; no browser is downloaded).
// Runs from npm's postinstall,
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
  {
    command: "redis-server",
    package: "redis-server",
    // Fedora and Alpine name it "redis".
    packages: { dnf: "redis", apk: "redis" },
    why: "tests of several instances sharing Redis",
    // Installed for installs and tests, never by `npm start`.
    testsOnly: true,
  },
  {
    command: "chromium",
    // Fedora names the binary chromium-browser.
    alternatives: ["chromium-browser"],
    package: "chromium",
    why: "browser tests of the session page",
    testsOnly: true,
  },
];

/** The package's name for a package manager. */
const packageName = (p, manager) => p.packages?.[manager] ?? p.package;

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
  const starting = process.env.npm_lifecycle_event === "prestart";
  const installed = (p) => [p.command, ...(p.alternatives ?? [])].some(which);
  const missing = PACKAGES.filter((p) => !installed(p) && !(starting && p.testsOnly));
  if (missing.length === 0) return;
  const manager = MANAGERS.find((m) => which(m.name));
  const names = missing.map((p) => packageName(p, manager?.name));
  const what = missing.map((p) => `${packageName(p, manager?.name)} (${p.why})`).join(", ");
  const isRoot = typeof process.getuid === "function" && process.getuid() === 0;

  if (!manager || !isRoot) {
    const command = manager
      ? manager
          .steps(names)
          .map((argv) => `sudo ${argv.join(" ")}`)
          .join(" && ")
      : `install ${names.join(" ")} with your system's package manager`;
    say(`missing system packages: ${what}. Run: ${command}`);
    if (missing.some((p) => !p.testsOnly))
      say("until then commands run without isolation in development, and production refuses to start");
    else say(`until then the tests that need them are skipped (${missing.map((p) => p.why).join(", ")})`);
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
  const still = missing.filter((p) => !installed(p)).map((p) => p.package);
  if (still.length > 0) say(`still missing after the install: ${still.join(", ")}`);
}

main();
