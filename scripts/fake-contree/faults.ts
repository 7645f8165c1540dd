// Fault injection: HTTP faults (answer a status or drop the connection for the next N matching
// requests) and stream faults (cut an SSE stream, or end it with `event: sse_error`, after K events).
import type { FaultRule, StreamFault } from "./index.ts";

interface ArmedRule extends FaultRule {
  remaining: number;
}

interface ArmedStream extends StreamFault {
  remaining: number;
}

export class Faults {
  private rules: ArmedRule[] = [];
  private streams: ArmedStream[] = [];

  add(rule: FaultRule): void {
    this.rules.push({ ...rule, remaining: rule.times ?? 1 });
  }

  addStream(fault: StreamFault): void {
    this.streams.push({ ...fault, remaining: fault.times ?? 1 });
  }

  clear(): void {
    this.rules = [];
    this.streams = [];
  }

  /** The first armed rule matching this request, used up by one; null when none. */
  take(method: string, pathname: string): FaultRule | null {
    for (const rule of this.rules) {
      if (rule.remaining <= 0) continue;
      if (rule.method && rule.method.toUpperCase() !== method) continue;
      const hit = typeof rule.path === "string" ? rule.path === pathname : rule.path.test(pathname);
      if (!hit) continue;
      rule.remaining--;
      return rule;
    }
    return null;
  }

  /**
   * Reserves a stream fault for one SSE connection. `release(false)` gives it back when the
   * connection ended before the fault fired; `release(true)` marks it used.
   */
  reserveStream(operation: string): { fault: StreamFault; release(fired: boolean): void } | null {
    for (const fault of this.streams) {
      if (fault.remaining <= 0) continue;
      if (fault.operation && fault.operation !== operation) continue;
      fault.remaining--;
      let settled = false;
      return {
        fault,
        release(fired) {
          if (settled) return;
          settled = true;
          if (!fired) fault.remaining++;
        },
      };
    }
    return null;
  }
}
