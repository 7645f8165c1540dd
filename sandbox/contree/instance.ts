// A kept-alive ConTree VM (contree-api.md §2.6, §4): an instance operation whose main process
// (spid 1) sleeps while subprocesses run in the same filesystem. Their output arrives only as
// events with their spid; stop() ends the VM with SIGTERM and returns the image of its final state.

import type { CallOptions, ContreeClient } from "./client.ts";
import { concatBytes, decodeStreamRepr, encodeStdin, wireNumber } from "./encoding.ts";
import {
  ContreeAbortedError,
  ContreeConflictError,
  ContreeError,
  ContreeEventsUnavailableError,
  ContreeOperationFailedError,
} from "./errors.ts";
import { sleep } from "./retry.ts";
import {
  type ExecSpec,
  type InstanceResult,
  isEventType,
  isTerminalStatus,
  type OperationEvent,
} from "./types.ts";

export interface ExecOptions extends CallOptions {
  /** This subprocess's events (spawn, stdout/stderr chunks, exit…), in order. */
  onEvent?: (event: OperationEvent) => void;
  /** Called with the spid as soon as the subprocess exists (before any output). */
  onStart?: (spid: number) => void;
}

export interface ExecResult {
  spid: number;
  /** null when killed by a signal or timed out (the server reports −1). */
  exitCode: number | null;
  /** The signal number that ended it, or null. */
  signal: number | null;
  timedOut: boolean;
  stdout: string;
  stderr: string;
  /** Output hit `truncate_output_at`. */
  truncated: boolean;
  durationMs: number | null;
}

const TEXT = new TextDecoder();

/** Accumulates one process's events into its result. */
class ProcessFold {
  private readonly stdout: Uint8Array[] = [];
  private readonly stderr: Uint8Array[] = [];
  private truncated = false;
  exit: { code: number; signal: number; timedOut: boolean; durationMs: number | null } | null = null;

  constructor(readonly spid: number) {}

  add(event: OperationEvent): void {
    if (isEventType(event, "stdout") || isEventType(event, "stderr")) {
      (event.type === "stdout" ? this.stdout : this.stderr).push(decodeStreamRepr(event.data));
      if (event.data.truncated) this.truncated = true;
    } else if (isEventType(event, "truncated")) {
      this.truncated = true;
    } else if (isEventType(event, "exit")) {
      this.exit = {
        code: event.data.code,
        signal: event.data.signal,
        timedOut: event.data.timed_out === true,
        durationMs: event.data.duration_ms ?? null,
      };
    }
  }

  result(): ExecResult {
    return {
      spid: this.spid,
      exitCode: wireNumber(this.exit?.code),
      signal: wireNumber(this.exit?.signal),
      timedOut: this.exit?.timedOut ?? false,
      stdout: TEXT.decode(concatBytes(this.stdout)),
      stderr: TEXT.decode(concatBytes(this.stderr)),
      truncated: this.truncated,
      durationMs: this.exit?.durationMs ?? null,
    };
  }
}

function resultOfInstance(spid: number, result: InstanceResult): ExecResult {
  return {
    spid,
    exitCode: wireNumber(result.state.exit_code),
    signal: wireNumber(result.state.signal),
    timedOut: result.state.timed_out === true,
    stdout: TEXT.decode(decodeStreamRepr(result.stdout)),
    stderr: TEXT.decode(decodeStreamRepr(result.stderr)),
    truncated: result.stdout?.truncated === true || result.stderr?.truncated === true,
    durationMs: null,
  };
}

function finished(result: InstanceResult): boolean {
  return (
    result.state.exit_code !== -1 || (result.state.signal ?? -1) !== -1 || result.state.timed_out === true
  );
}

export class LiveInstance {
  readonly client: ContreeClient;
  /** The instance operation's id. */
  readonly operationId: string;

  constructor(client: ContreeClient, operationId: string) {
    this.client = client;
    this.operationId = operationId;
  }

  /** Resolves once the main process (spid 1) has started, i.e. subprocesses may be created. */
  async ready(options: CallOptions = {}): Promise<void> {
    const { signal } = options;
    try {
      for await (const event of this.client.events(this.operationId, { follow: true, signal })) {
        if (event.type === "spawn" && event.spid === 1) return;
      }
    } catch (err) {
      if (!(err instanceof ContreeEventsUnavailableError)) throw err;
      // No event log: poll until EXECUTING; createSubprocess retries the remaining 425s.
      for (let delay = this.client.pollInitialMs; ; delay = Math.min(delay * 2, this.client.pollMaxMs)) {
        const operation = await this.client.getOperation(this.operationId, { signal });
        if (operation.status === "EXECUTING") return;
        if (isTerminalStatus(operation.status)) throw new ContreeOperationFailedError(operation);
        await sleep(delay, signal);
      }
    }
    // the log completed before the main process started
    throw new ContreeOperationFailedError(await this.client.getOperation(this.operationId, { signal }));
  }

  /** Creates a subprocess and returns its spid without waiting for it. */
  async start(spec: ExecSpec, options: CallOptions = {}): Promise<number> {
    return (await this.client.createSubprocess(this.operationId, spec, options)).spid;
  }

  /**
   * Runs a subprocess to its end and folds its events into a result. On abort the subprocess is
   * killed (SIGKILL) and ContreeAbortedError is thrown.
   */
  async exec(spec: ExecSpec, options: ExecOptions = {}): Promise<ExecResult> {
    const spid = await this.start(spec, options);
    options.onStart?.(spid);
    try {
      return await this.wait(spid, options);
    } catch (err) {
      if (err instanceof ContreeAbortedError) {
        await this.kill(spid, "KILL").catch(() => {});
      }
      throw err;
    }
  }

  /** Follows one subprocess's events until its `exit` and returns the folded result. */
  async wait(spid: number, options: ExecOptions = {}): Promise<ExecResult> {
    const { signal, onEvent } = options;
    const fold = new ProcessFold(spid);
    try {
      for await (const event of this.client.events(this.operationId, { follow: true, spid, signal })) {
        if (event.spid !== undefined && event.spid !== spid) continue;
        onEvent?.(event);
        fold.add(event);
        if (fold.exit) return fold.result();
      }
    } catch (err) {
      if (!(err instanceof ContreeEventsUnavailableError)) throw err;
      for (let delay = this.client.pollInitialMs; ; delay = Math.min(delay * 2, this.client.pollMaxMs)) {
        const result = await this.client.getSubprocess(this.operationId, spid, { signal });
        if (finished(result)) return resultOfInstance(spid, result);
        await sleep(delay, signal);
      }
    }
    // The stream ended without an exit event (the VM ended): take the server's folded state.
    return resultOfInstance(spid, await this.client.getSubprocess(this.operationId, spid, { signal }));
  }

  /** Writes to a process's stdin (spid 1 = main); `close: true` sends EOF after the data. */
  async writeStdin(
    spid: number,
    data: string | Uint8Array,
    options: CallOptions & { close?: boolean } = {},
  ): Promise<void> {
    await this.client.writeStdin(this.operationId, spid, encodeStdin(data, options.close), options);
  }

  /** Sends a signal ("TERM", "KILL", "INT"…) to a process. */
  async kill(spid: number, signal = "TERM", options: CallOptions = {}): Promise<void> {
    await this.client.killSubprocess(this.operationId, spid, signal, options);
  }

  /**
   * Ends the VM: SIGTERM to the main process, wait for the operation, return its result image
   * (null when spawned disposable). Subprocesses still running are ended with the VM; what they
   * wrote so far is in the image. Throws ContreeOperationFailedError if the operation did not
   * end SUCCESS.
   */
  async stop(options: CallOptions = {}): Promise<string | null> {
    const { signal } = options;
    try {
      await this.client.killSubprocess(this.operationId, 1, "TERM", { signal });
    } catch (err) {
      // already ended (404/409/410): fall through to read the final state
      if (!(err instanceof ContreeError) || ![404, 409, 410].includes(err.status ?? 0)) throw err;
    }
    const operation = await this.client.waitForOperation(this.operationId, { signal, spid: 1 });
    if (operation.status !== "SUCCESS") throw new ContreeOperationFailedError(operation);
    return operation.result_image_uuid ?? operation.result?.image ?? null;
  }

  /** Cancels the operation: the VM is discarded without a result image. No-op if already ended. */
  async cancel(options: CallOptions = {}): Promise<void> {
    try {
      await this.client.cancelOperation(this.operationId, options);
    } catch (err) {
      if (!(err instanceof ContreeConflictError)) throw err;
    }
  }
}
