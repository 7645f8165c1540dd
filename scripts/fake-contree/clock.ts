// Time for the fake: a wall clock that tests can move forward (timestamps, since/until filters),
// ISO-8601 UTC formatting, and parsing of the API's time parameters (ISO, relative `15m`/`2h`/`3d`/`1w`,
// or a Unix epoch).
import { badRequest } from "./errors.ts";

export class Clock {
  private offsetMs = 0;

  now(): number {
    return Date.now() + this.offsetMs;
  }

  /** Moves the fake's notion of "now" forward (created_at of new records, relative filters). */
  advance(ms: number): void {
    this.offsetMs += ms;
  }

  iso(ms: number = this.now()): string {
    return new Date(ms).toISOString();
  }
}

const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/** A `since`/`until` value as epoch milliseconds; 400 when it is none of the accepted forms. */
export function parseTimeParam(name: string, value: string, now: number): number {
  const text = value.trim();
  const relative = /^(\d+(?:\.\d+)?)\s*([smhdw])$/i.exec(text);
  if (relative) return now - Number(relative[1]) * UNIT_MS[relative[2]!.toLowerCase()]!;
  if (/^\d+(?:\.\d+)?$/.test(text)) {
    const n = Number(text);
    // Seconds unless it only makes sense as milliseconds.
    return n > 1e11 ? n : n * 1000;
  }
  const parsed = Date.parse(text);
  if (Number.isNaN(parsed)) throw badRequest(`invalid ${name}: ${JSON.stringify(value)}`);
  return parsed;
}
