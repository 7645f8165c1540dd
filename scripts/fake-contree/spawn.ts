// Validation of spawn requests (InstanceSpawnRequest) and subprocess requests (ExecSpec): types,
// the rules the real service states (absolute cwd, no args with shell:true, timeout within
// instance_max_timeout), image and file references; the result is what the VM needs to run it.
import { badRequest, notFound } from "./errors.ts";
import type { FileRecord, FileStore } from "./files.ts";
import type { ImageRecord, ImageStore } from "./images.ts";
import { decodeStream, isObject, optBool, optInt, optString, optStringArray, optStringMap } from "./wire.ts";

export const DEFAULT_TIMEOUT = 60;
export const DEFAULT_TRUNCATE_AT = 1 << 20;
export const DEFAULT_CWD = "/root";
export const DEFAULT_HOSTNAME = "linuxkit";

export interface Limits {
  instance_max_timeout: number;
  instance_max_concurrency: number;
  instance_max_layer_bytes: number;
  images_import_max_concurrency: number;
  images_import_max_timeout: number;
}

export interface FileInjection {
  path: string;
  file: FileRecord;
  mode: number;
  uid: number;
  gid: number;
}

/** What a process needs, shared by the main process and subprocesses. */
export interface ExecSpec {
  command: string;
  args: string[];
  shell: boolean;
  env: Record<string, string>;
  cwd: string;
  uid: number;
  gid: number;
  stdin: Buffer | null;
  stdinClose: boolean;
  truncateAt: number;
}

export interface SpawnSpec extends ExecSpec {
  image: ImageRecord;
  hostname: string;
  disposable: boolean;
  preserveEnv: boolean;
  timeout: number;
  files: FileInjection[];
  maxLayerBytes: number;
  network: boolean;
}

function parseMode(value: unknown, field: string): number {
  if (value === undefined || value === null) return 0o644;
  let mode: number;
  if (typeof value === "number" && Number.isInteger(value)) mode = value;
  else if (typeof value === "string" && /^(0o|0)?[0-7]{1,4}$/i.test(value.trim())) {
    mode = Number.parseInt(value.trim().replace(/^0o/i, ""), 8);
  } else throw badRequest(`${field}.mode must be an octal string like "0644" or an integer`);
  if (mode < 0 || mode > 0o7777) throw badRequest(`${field}.mode is out of range`);
  return mode;
}

export function parseExec(body: unknown, defaults: { cwd: string }): ExecSpec {
  if (!isObject(body)) throw badRequest("request body must be a JSON object");
  const command = optString(body, "command");
  if (!command) throw badRequest("command is required");
  const args = optStringArray(body, "args") ?? [];
  const shell = optBool(body, "shell") ?? false;
  if (shell && args.length > 0) throw badRequest("args cannot be combined with shell: true");
  const cwd = optString(body, "cwd") || defaults.cwd;
  if (!cwd.startsWith("/")) throw badRequest(`cwd must be an absolute path: ${JSON.stringify(cwd)}`);
  const env = optStringMap(body, "env") ?? {};
  for (const key of Object.keys(env)) {
    if (!key || key.includes("=") || key.includes("\0"))
      throw badRequest(`invalid env name: ${JSON.stringify(key)}`);
  }
  let stdin: Buffer | null = null;
  let stdinClose = true;
  if (body.stdin !== undefined && body.stdin !== null) {
    const decoded = decodeStream(body.stdin, "stdin");
    stdin = decoded.bytes;
    stdinClose = decoded.close ?? true;
  }
  return {
    command,
    args,
    shell,
    env,
    cwd,
    uid: optInt(body, "uid") ?? 0,
    gid: optInt(body, "gid") ?? 0,
    stdin,
    stdinClose,
    truncateAt: optInt(body, "truncate_output_at") ?? DEFAULT_TRUNCATE_AT,
  };
}

export function parseSpawn(body: unknown, images: ImageStore, files: FileStore, limits: Limits): SpawnSpec {
  const exec = parseExec(body, { cwd: DEFAULT_CWD });
  const req = body as Record<string, any>;
  const imageRef = optString(req, "image");
  if (!imageRef) throw badRequest("image is required");
  const timeout = optInt(req, "timeout", 1) ?? DEFAULT_TIMEOUT;
  if (timeout > limits.instance_max_timeout) {
    throw badRequest(`timeout must not exceed ${limits.instance_max_timeout} seconds`);
  }
  const hostname = optString(req, "hostname") || DEFAULT_HOSTNAME;
  if (
    !/^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/.test(
      hostname,
    )
  ) {
    throw badRequest(`invalid hostname: ${JSON.stringify(hostname)}`);
  }
  let maxLayerBytes = limits.instance_max_layer_bytes;
  if (req.resources_limits !== undefined && req.resources_limits !== null) {
    if (!isObject(req.resources_limits)) throw badRequest("resources_limits must be an object");
    const requested = optInt(req.resources_limits, "max_layer_bytes");
    if (requested !== undefined) maxLayerBytes = Math.min(requested, maxLayerBytes);
  }
  let network = true;
  if (req.networking !== undefined && req.networking !== null) {
    if (!isObject(req.networking)) throw badRequest("networking must be an object");
    network = optBool(req.networking, "enabled") ?? true;
  }
  const fileSpecs: { path: string; spec: Record<string, any> }[] = [];
  if (req.files !== undefined && req.files !== null) {
    if (!isObject(req.files)) throw badRequest("files must be an object of path -> FileSpec");
    for (const [path, spec] of Object.entries(req.files)) {
      if (!path.startsWith("/")) throw badRequest(`files: destination must be an absolute path: ${path}`);
      if (!isObject(spec) || typeof spec.uuid !== "string")
        throw badRequest(`files[${path}].uuid is required`);
      fileSpecs.push({ path, spec });
    }
  }
  // Validated; now the references.
  const image = images.resolveRef(imageRef);
  const injections: FileInjection[] = fileSpecs.map(({ path, spec }) => {
    const file = files.getByUuid(spec.uuid);
    if (!file) throw notFound(`file not found: ${spec.uuid}`);
    return {
      path,
      file,
      mode: parseMode(spec.mode, `files[${path}]`),
      uid: optInt(spec, "uid") ?? 0,
      gid: optInt(spec, "gid") ?? 0,
    };
  });
  return {
    ...exec,
    image,
    hostname,
    disposable: optBool(req, "disposable") ?? false,
    preserveEnv: optBool(req, "preserve_env") ?? false,
    timeout,
    files: injections,
    maxLayerBytes,
    network,
  };
}
