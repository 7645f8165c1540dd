// Running processes "in a microVM": each process is a bubblewrap sandbox whose `/` is the
// operation's writable working directory (a copy of the image). The image holds only its own files;
// the host's /usr, /bin, /lib… (read-only) and a few /etc files (ld.so cache, alternatives, hosts,
// and DNS/CA files when networking is on) stand in for the image's operating system; the mount
// points bubblewrap leaves in the working directory are removed before it is saved. Every process
// of one operation (the main one, spid 1, and subprocesses, spid 2, 3, …) runs on the same working
// directory, so their writes end up in the same result image.
//
// Signals: SIGKILL (kill, timeout, cancel, end of the VM) ends a process's whole sandbox; any other
// signal goes to the command itself. A killed process reports exit code −1 and the signal.
//
// Deviations from a real VM: processes of one operation do not share a PID namespace (and, with
// networking off, not a network namespace either); with networking on they share the host's network
// (nothing is exposed through the API, but a listening process is reachable from the host). A
// command that cannot be executed exits with 1 and bubblewrap's message on stderr. As root the
// sandbox keeps a Docker-like capability set and switches to uid/gid with setpriv; otherwise a user
// namespace maps the requested uid/gid to the caller (and injected files keep the caller's owner).
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { existsSync, lstatSync, readdirSync, readFileSync, readlinkSync, realpathSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { constants as osConstants } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import type { ExecSpec } from "./spawn.ts";
import { resolveInRoot } from "./tree.ts";
import { streamRepr, ZERO_EVENT_RESOURCES, ZERO_INSTANCE_RESOURCES } from "./wire.ts";

const run = promisify(execFile);

export const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const SYSTEM_DIRS = ["bin", "sbin", "lib", "lib32", "lib64", "libx32"];
const ETC_ALWAYS = ["ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "localtime", "hosts"];
const ETC_NETWORK = [
  "resolv.conf",
  "nsswitch.conf",
  "gai.conf",
  "ssl",
  "ca-certificates",
  "ca-certificates.conf",
];
// What Docker grants a container's root by default.
const ROOT_CAPS = [
  "CAP_CHOWN",
  "CAP_DAC_OVERRIDE",
  "CAP_FOWNER",
  "CAP_FSETID",
  "CAP_KILL",
  "CAP_SETGID",
  "CAP_SETUID",
  "CAP_SETFCAP",
  "CAP_NET_BIND_SERVICE",
];
const REDACT_RE = /(token|secret|password|api_key|credentials|authorization)$/i;
const AS_ROOT = process.getuid?.() === 0;

/** Whether the fake can run processes: the bwrap binary, or why not (then spawns end FAILED). */
export type Sandbox = { bwrap: string; unavailable: null } | { bwrap: null; unavailable: string };

/**
 * The bwrap binary, after checking that it can build the fake's kind of sandbox here. Without one
 * the fake still serves everything but processes (images, files, inspect, operations, events): it is
 * a test double of a remote service, which has no reason to need bubblewrap on the caller's machine.
 */
export async function probeSandbox(): Promise<Sandbox> {
  const candidates = ["/usr/bin/bwrap", "/usr/local/bin/bwrap", "/bin/bwrap"];
  const found = candidates.find((c) => existsSync(c));
  if (!found) return { bwrap: null, unavailable: "bubblewrap (bwrap) is not installed" };
  // The same kind of sandbox the fake builds, on an empty root (binding the host's / would also bind
  // whatever other programs mount and unmount meanwhile).
  const args = [...namespaceArgs(false, 0, 0), "--die-with-parent", "--ro-bind", "/usr", "/usr"];
  for (const name of SYSTEM_DIRS) {
    const host = `/${name}`;
    if (!existsSync(host)) continue;
    if (lstatSync(host).isSymbolicLink()) args.push("--symlink", readlinkSync(host), host);
    else args.push("--ro-bind", host, host);
  }
  args.push("--proc", "/proc", "--dev", "/dev", "--", "/bin/sh", "-c", "true");
  try {
    await run(found, args, { timeout: 10_000 });
  } catch (error) {
    // A spawn error names itself by code (EACCES, ENOENT); bwrap's own failure says why on stderr.
    const { code, stderr, message } = error as { code?: unknown; stderr?: string; message: string };
    const detail = typeof code === "string" ? code : stderr?.trim() || message;
    return { bwrap: null, unavailable: `bubblewrap at ${found} cannot create a sandbox here (${detail})` };
  }
  return { bwrap: found, unavailable: null };
}

/** Namespaces and identity: as root, real uids with Docker's capabilities; otherwise a user namespace. */
function namespaceArgs(network: boolean, uid: number, gid: number): string[] {
  const args: string[] = [];
  if (AS_ROOT) {
    args.push("--unshare-ipc", "--unshare-pid", "--unshare-uts", "--unshare-cgroup-try");
    if (!network) args.push("--unshare-net");
    args.push("--cap-drop", "ALL");
    for (const cap of ROOT_CAPS) args.push("--cap-add", cap);
  } else {
    args.push("--unshare-all", "--unshare-user", "--uid", String(uid), "--gid", String(gid));
    if (network) args.push("--share-net");
  }
  return args;
}

export function signalNumber(name: string): number | null {
  const text = name.trim().toUpperCase();
  if (/^\d+$/.test(text)) {
    const n = Number(text);
    return n > 0 && n < 65 ? n : null;
  }
  const key = (text.startsWith("SIG") ? text : `SIG${text}`) as keyof typeof osConstants.signals;
  return osConstants.signals[key] ?? null;
}

/** The first child process of `pid` (via /proc), or null. */
function childOf(pid: number): number | null {
  try {
    const children = readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/);
    if (children[0]) return Number(children[0]);
  } catch {}
  try {
    for (const entry of readdirSync("/proc")) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
        const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
        if (ppid === pid) return Number(entry);
      } catch {}
    }
  } catch {}
  return null;
}

/** A process to run: the validated ExecSpec plus its own time limit. */
export interface ExecRequest extends ExecSpec {
  /** Seconds; null = no limit of its own (subprocesses live as long as the VM). */
  timeout: number | null;
}

export type Emit = (type: string, spid: number, data: unknown) => void;

class Capture {
  chunks: Buffer[] = [];
  emitted = 0;
  dropped = 0;

  bytes(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

export class VmProcess {
  readonly pid: number;
  readonly startedMs = Date.now();
  endedMs: number | null = null;
  exitCode: number | null = null;
  signal: number | null = null;
  timedOut = false;
  stdinOpen = true;
  readonly done: Promise<void>;
  private killedWith: number | null = null;
  /** bwrap has created the sandbox (its --json-status-fd said so): signals reach everything now. */
  private ready = false;
  private sandboxPid: number | null = null;
  private pendingSignal: number | null = null;
  private stdout = new Capture();
  private stderr = new Capture();
  private timer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    readonly spid: number,
    private child: ChildProcess,
    private request: ExecRequest,
    private emit: Emit,
  ) {
    this.pid = child.pid ?? -1;
    child.stdin?.on("error", () => {});
    let status = "";
    child.stdio[3]?.on("data", (chunk: Buffer) => {
      status += chunk.toString();
      const pid = /"child-pid"\s*:\s*(\d+)/.exec(status);
      if (!pid || this.ready) return;
      this.sandboxPid = Number(pid[1]);
      this.ready = true;
      if (this.pendingSignal !== null) this.signalGroup(this.pendingSignal);
    });
    child.stdout?.on("data", (chunk: Buffer) => this.onOutput("stdout", this.stdout, chunk));
    child.stderr?.on("data", (chunk: Buffer) => this.onOutput("stderr", this.stderr, chunk));
    if (request.timeout !== null) {
      this.timer = setTimeout(() => {
        this.timedOut = true;
        this.signalGroup(9);
      }, request.timeout * 1000);
    }
    this.done = new Promise((resolve) => {
      let settled = false;
      const finish = (code: number | null, signal: NodeJS.Signals | null) => {
        if (settled) return;
        settled = true;
        this.onExit(code, signal);
        resolve();
      };
      child.on("close", finish);
      child.on("error", (error) => {
        this.onOutput(
          "stderr",
          this.stderr,
          Buffer.from(`fake-contree: cannot start process: ${error.message}\n`),
        );
        finish(127, null);
      });
    });
  }

  get running(): boolean {
    return this.endedMs === null;
  }

  private onOutput(stream: "stdout" | "stderr", capture: Capture, chunk: Buffer) {
    const room = Math.max(0, this.request.truncateAt - capture.emitted);
    const keep = chunk.subarray(0, room);
    capture.dropped += chunk.byteLength - keep.byteLength;
    if (keep.byteLength === 0) return;
    capture.chunks.push(keep);
    capture.emitted += keep.byteLength;
    this.emit(stream, this.spid, streamRepr(keep, keep.byteLength < chunk.byteLength ? true : undefined));
  }

  private onExit(code: number | null, signal: NodeJS.Signals | null) {
    if (this.timer) clearTimeout(this.timer);
    this.endedMs = Date.now();
    this.stdinOpen = false;
    for (const [name, capture] of [
      ["stdout", this.stdout],
      ["stderr", this.stderr],
    ] as const) {
      if (capture.dropped > 0) {
        this.emit("truncated", this.spid, {
          stream: name,
          bytes_emitted: capture.emitted,
          bytes_dropped: capture.dropped,
        });
      }
    }
    const bySignal = signal ? (osConstants.signals[signal] ?? 9) : null;
    if (this.timedOut) {
      this.exitCode = -1;
      this.signal = 9;
    } else if (bySignal !== null) {
      this.exitCode = -1;
      this.signal = bySignal;
    } else if (this.killedWith !== null && code === 128 + this.killedWith) {
      this.exitCode = -1;
      this.signal = this.killedWith;
    } else {
      this.exitCode = code ?? -1;
      this.signal = -1;
    }
    this.emit("exit", this.spid, {
      pid: this.pid,
      code: this.exitCode,
      signal: this.signal,
      core_dump: false,
      timed_out: this.timedOut,
      duration_ms: this.endedMs - this.startedMs,
      resources: ZERO_EVENT_RESOURCES,
    });
  }

  writeStdin(bytes: Buffer, close: boolean): void {
    if (bytes.byteLength > 0) {
      this.child.stdin?.write(bytes);
      this.emit("stdin", this.spid, streamRepr(bytes));
    }
    if (close) {
      this.stdinOpen = false;
      this.child.stdin?.end();
    }
  }

  /** Sends a signal to the whole process (group); exit code −1 and the signal are reported. */
  kill(signo: number): void {
    this.killedWith = signo;
    this.signalGroup(signo);
  }

  /**
   * SIGKILL ends the sandbox's PID namespace (its init, then everything in it) and bwrap; other
   * signals go to the command itself (the child of the namespace's init), as a VM's init would do.
   */
  private signalGroup(signo: number) {
    if (!this.running || this.pid <= 0) return;
    // Until the sandbox exists a signal could outrun bwrap's own setup (and orphan the sandbox).
    if (!this.ready || this.sandboxPid === null) {
      this.pendingSignal = this.pendingSignal === 9 ? 9 : signo;
      return;
    }
    const sandbox = this.sandboxPid;
    if (signo === 9) {
      // The namespace's init takes every process in it along; bwrap then exits (and reaps it).
      try {
        process.kill(sandbox, 9);
      } catch {
        try {
          process.kill(-this.pid, 9);
        } catch {}
      }
      return;
    }
    void (async () => {
      // The command appears once bwrap has finished setting up the sandbox.
      for (let i = 0; i < 500 && this.running; i++) {
        const command = childOf(sandbox);
        if (command !== null) {
          try {
            process.kill(command, signo);
          } catch {}
          return;
        }
        await new Promise((r) => setTimeout(r, 10));
      }
    })();
  }

  /** The folded InstanceResult; exit_code and signal read −1 while running. */
  result() {
    const elapsed = ((this.endedMs ?? Date.now()) - this.startedMs) / 1000;
    return {
      resources: { ...ZERO_INSTANCE_RESOURCES, elapsed_time: elapsed, monotonic_time: elapsed },
      state: {
        exit_code: this.running ? -1 : this.exitCode,
        pid: this.pid,
        signal: this.running ? -1 : this.signal,
        timed_out: this.timedOut,
        core_dump: false,
        stopped: false,
        continued: false,
      },
      stdout: streamRepr(this.stdout.bytes(), this.stdout.dropped > 0),
      stderr: streamRepr(this.stderr.bytes(), this.stderr.dropped > 0),
    };
  }
}

export interface VmOptions {
  bwrap: string;
  network: boolean;
  hostname: string;
}

/** One operation's "VM": its working directory and the processes running on it. */
export class Vm {
  readonly processes = new Map<number, VmProcess>();
  /** In-image paths bubblewrap created as mount points (removed before the tree is saved). */
  readonly stubs = new Set<string>();

  constructor(
    readonly root: string,
    private options: VmOptions,
    private emit: Emit,
  ) {}

  get running(): VmProcess[] {
    return [...this.processes.values()].filter((p) => p.running);
  }

  async start(spid: number, request: ExecRequest): Promise<VmProcess> {
    // A missing working directory is created, as `docker run -w` does.
    const cwd = await resolveInRoot(this.root, request.cwd, { allowMissing: true });
    if (!cwd.exists) await mkdir(cwd.host, { recursive: true });
    const argv = request.shell ? ["/bin/sh", "-c", request.command] : [request.command, ...request.args];
    const bwrapArgs = this.bwrapArgs(request, argv);
    const child = spawn(this.options.bwrap, bwrapArgs, {
      detached: true,
      stdio: ["pipe", "pipe", "pipe", "pipe"],
      env: {},
    });
    const proc = new VmProcess(spid, child, request, this.emit);
    this.processes.set(spid, proc);
    const env: Record<string, string> = {};
    for (const [key, value] of Object.entries(request.env)) env[key] = REDACT_RE.test(key) ? "***" : value;
    this.emit("spawn", spid, {
      pid: proc.pid,
      command: argv[0],
      args: argv.slice(1),
      shell: request.shell,
      cwd: request.cwd,
      uid: request.uid,
      gid: request.gid,
      timeout: request.timeout ?? 0,
      truncate_at: request.truncateAt,
      env,
    });
    proc.writeStdin(request.stdin ?? Buffer.alloc(0), request.stdinClose);
    return proc;
  }

  private bwrapArgs(request: ExecRequest, argv: string[]): string[] {
    const { network, hostname } = this.options;
    const args = namespaceArgs(network, request.uid, request.gid);
    args.push("--json-status-fd", "3", "--die-with-parent", "--hostname", hostname, "--bind", this.root, "/");
    this.mount(args, "--ro-bind", "/usr", "/usr");
    for (const name of SYSTEM_DIRS) {
      const host = `/${name}`;
      if (!existsSync(host)) continue;
      const hostStat = lstatSync(host);
      const inImage = this.lstatInRoot(host);
      if (hostStat.isSymbolicLink()) {
        if (this.stubs.has(host) || inImage?.isSymbolicLink()) continue;
        if (!inImage) {
          args.push("--symlink", readlinkSync(host), host);
          this.stubs.add(host);
        } else if (inImage.isDirectory()) args.push("--ro-bind", realpathSync(host), host);
      } else if (hostStat.isDirectory()) this.mount(args, "--ro-bind", host, host);
    }
    this.mount(args, "--proc", null, "/proc");
    this.mount(args, "--dev", null, "/dev");
    for (const name of [...ETC_ALWAYS, ...(network ? ETC_NETWORK : [])]) {
      const host = `/etc/${name}`;
      if (!existsSync(host)) continue;
      // The image's own file wins; a mount point we created earlier is mounted again.
      if (this.lstatInRoot(host) && !this.stubs.has(host)) continue;
      this.mount(args, "--ro-bind", host, host);
    }
    args.push("--chdir", request.cwd, "--clearenv");
    for (const [key, value] of Object.entries(request.env)) args.push("--setenv", key, value);
    args.push("--");
    if (AS_ROOT && (request.uid !== 0 || request.gid !== 0)) {
      args.push("/usr/bin/setpriv", "--reuid", String(request.uid), "--regid", String(request.gid));
      args.push("--clear-groups", "--");
    }
    args.push(...argv);
    return args;
  }

  private mount(args: string[], kind: string, src: string | null, dest: string) {
    if (!this.lstatInRoot(dest)) this.stubs.add(dest);
    if (src === null) args.push(kind, dest);
    else args.push(kind, src, dest);
  }

  private lstatInRoot(path: string) {
    try {
      return lstatSync(join(this.root, path));
    } catch {
      return null;
    }
  }

  /** Kills every running process (SIGKILL) and waits for them. */
  async killAll(): Promise<void> {
    const running = this.running;
    for (const proc of running) proc.kill(9);
    await Promise.all(running.map((p) => p.done));
  }
}
