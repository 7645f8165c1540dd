// Fault injection: HTTP faults (answer a status or drop the connection for the next N matching
// requests), stream faults (cut an SSE stream, or end it with `event: sse_error`, after K events) and
// body faults (break any streamed body — archive or event stream — after K bytes: end it without the
// gzip trailer, go silent, or reset the connection).
import type { BodyFault, FaultRule, StreamFault } from "./index.ts";

interface ArmedRule extends FaultRule {
  remaining: number;
}

interface ArmedStream extends StreamFault {
  remaining: number;
}

interface ArmedBody extends BodyFault {
  remaining: number;
}

const matches = (rule: { method?: string; path: RegExp | string }, method: string, pathname: string) =>
  (!rule.method || rule.method.toUpperCase() === method) &&
  (typeof rule.path === "string" ? rule.path === pathname : rule.path.test(pathname));

export class Faults {
  private rules: ArmedRule[] = [];
  private streams: ArmedStream[] = [];
  private bodies: ArmedBody[] = [];

  add(rule: FaultRule): void {
    this.rules.push({ ...rule, remaining: rule.times ?? 1 });
  }

  addStream(fault: StreamFault): void {
    this.streams.push({ ...fault, remaining: fault.times ?? 1 });
  }

  addBody(fault: BodyFault): void {
    this.bodies.push({ ...fault, remaining: fault.times ?? 1 });
  }

  clear(): void {
    this.rules = [];
    this.streams = [];
    this.bodies = [];
  }

  /** The first armed body fault matching a request whose reply streams, used up by one; null when none. */
  takeBody(method: string, pathname: string): BodyFault | null {
    for (const fault of this.bodies) {
      if (fault.remaining <= 0 || !matches(fault, method, pathname)) continue;
      fault.remaining--;
      return fault;
    }
    return null;
  }

  /** The first armed rule matching this request, used up by one; null when none. */
  take(method: string, pathname: string): FaultRule | null {
    for (const rule of this.rules) {
      if (rule.remaining <= 0 || !matches(rule, method, pathname)) continue;
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
