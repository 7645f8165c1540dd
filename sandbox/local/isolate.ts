// bubblewrap command lines: a minimal read-only root (system dirs only: no /home, /root, /work or
// the platform's data), the workspace at /workspace, a private /tmp, new namespaces for everything
// (no network unless asked), all capabilities dropped, and death with the parent.
import { execFile } from "node:child_process";
import { existsSync, lstatSync, readlinkSync } from "node:fs";
import { promisify } from "node:util";

const run = promisify(execFile);

export const WORKSPACE = "/workspace";

// Only what programs need from /etc: /etc/shadow, host credentials and config stay out.
const ETC_ALLOWED = [
  "passwd",
  "group",
  "hosts",
  "resolv.conf",
  "nsswitch.conf",
  "ssl",
  "ca-certificates",
  "ca-certificates.conf",
  "alternatives",
  "localtime",
  "ld.so.cache",
  "ld.so.conf",
  "ld.so.conf.d",
  "os-release",
  "debian_version",
  "mime.types",
];
const SYSTEM_DIRS = ["bin", "sbin", "lib", "lib32", "lib64", "libx32"];

export const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

export interface SandboxCommand {
  workspace: string;
  command: string;
  env: Record<string, string>;
  network: boolean;
  /** Host paths made visible inside the sandbox. */
  binds?: { host: string; sandbox: string; writable?: boolean }[];
}

/** The root filesystem part of the argv, computed once: it depends only on the host. */
function rootArgs(): string[] {
  const args = ["--ro-bind", "/usr", "/usr"];
  for (const name of SYSTEM_DIRS) {
    const path = `/${name}`;
    if (!existsSync(path)) continue;
    const stat = lstatSync(path);
    if (stat.isSymbolicLink()) args.push("--symlink", readlinkSync(path), path);
    else if (stat.isDirectory()) args.push("--ro-bind", path, path);
  }
  args.push("--dir", "/etc");
  for (const name of ETC_ALLOWED)
    if (existsSync(`/etc/${name}`)) args.push("--ro-bind", `/etc/${name}`, `/etc/${name}`);
  return args;
}

let cachedRoot: string[] | undefined;

export function bwrapArgv(bwrap: string, spec: SandboxCommand): string[] {
  cachedRoot ??= rootArgs();
  const argv = [bwrap, "--unshare-all"];
  if (spec.network) argv.push("--share-net");
  argv.push("--die-with-parent", "--new-session", "--cap-drop", "ALL", "--hostname", "sandbox");
  argv.push(...cachedRoot);
  argv.push("--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp");
  for (const bind of spec.binds ?? [])
    argv.push(bind.writable ? "--bind" : "--ro-bind", bind.host, bind.sandbox);
  argv.push("--bind", spec.workspace, WORKSPACE, "--chdir", WORKSPACE, "--clearenv");
  for (const [key, value] of Object.entries(spec.env)) argv.push("--setenv", key, value);
  argv.push("/bin/sh", "-c", spec.command);
  return argv;
}

const BWRAP_PATHS = ["/usr/bin/bwrap", "/usr/local/bin/bwrap"];

/** Whether a bwrap binary is present at all (it may still be unable to build a sandbox). */
export const bubblewrapInstalled = (): boolean => BWRAP_PATHS.some((path) => existsSync(path));

/** The bwrap binary when it exists and can actually build a sandbox here; null otherwise. */
export async function detectBubblewrap(): Promise<string | null> {
  for (const candidate of BWRAP_PATHS) {
    if (!existsSync(candidate)) continue;
    try {
      const argv = bwrapArgv(candidate, { workspace: "/tmp", command: "true", env: {}, network: false });
      await run(argv[0]!, argv.slice(1), { timeout: 10_000 });
      return candidate;
    } catch {}
  }
  return null;
}
