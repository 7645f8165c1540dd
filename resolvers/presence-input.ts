// What a presence announcement may carry, checked the same way whether it arrives through the
// GraphQL `announcePresence` mutation or in a collaboration room's awareness frame. Everything here
// is iterative: a value nested 50,000 deep must be refused, not overflow the stack while measured
// (nor later, when a `presence { cursor }` query serialises it).

export const PRESENCE_LIMITS = {
  /** A cursor (or selection) serialised as JSON. */
  cursorBytes: 2048,
  /** Nesting of a cursor (y-codemirror's { anchor: { item: { client, clock } } } is 3). */
  cursorDepth: 6,
  /** Nesting of a whole awareness state (user, cursor and a few app fields). */
  stateDepth: 10,
  /** A whole awareness state serialised as JSON (UTF-8 bytes on the wire). */
  stateBytes: 8192,
  nameChars: 100,
  colorChars: 64,
  fileChars: 4096,
  idChars: 64,
} as const;

/**
 * How deeply a JSON text nests its objects and arrays, counted without parsing (brackets inside
 * strings do not count), stopping as soon as it passes `limit`. Lets a caller refuse a text before
 * JSON.parse builds it.
 */
export function jsonTextDepth(text: string, limit: number): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) {
      depth++;
      if (depth > max) max = depth;
      if (max > limit) return max;
    } else if (c === 0x7d || c === 0x5d) depth--;
  }
  return max;
}

/** Nesting depth of a parsed value (a scalar is 0, `{}` is 1), stopping as soon as it passes `limit`. */
export function valueDepth(value: unknown, limit: number): number {
  let max = 0;
  const stack: [unknown, number][] = [[value, 0]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (v === null || typeof v !== "object") continue;
    if (depth + 1 > max) max = depth + 1;
    if (max > limit) return max;
    for (const child of Array.isArray(v) ? v : Object.values(v)) stack.push([child, depth + 1]);
  }
  return max;
}

/** Why a cursor is not acceptable, or null when it is: null, or a small, shallow object or array. */
export function cursorProblem(cursor: unknown): string | null {
  if (cursor === null || cursor === undefined) return null;
  if (typeof cursor !== "object") return "cursor must be a JSON object or array";
  if (valueDepth(cursor, PRESENCE_LIMITS.cursorDepth) > PRESENCE_LIMITS.cursorDepth)
    return `cursor nests deeper than ${PRESENCE_LIMITS.cursorDepth} levels`;
  let size: number;
  try {
    size = Buffer.byteLength(JSON.stringify(cursor));
  } catch {
    return "cursor is not JSON";
  }
  if (size > PRESENCE_LIMITS.cursorBytes)
    return `cursor is ${size} bytes as JSON; at most ${PRESENCE_LIMITS.cursorBytes}`;
  return null;
}

/** Why a string field is not acceptable (null when absent or fine). */
function stringProblem(value: unknown, field: string, maxChars: number): string | null {
  if (value === undefined || value === null) return null;
  if (typeof value !== "string") return `${field} must be a string`;
  if (value.length > maxChars) return `${field} is longer than ${maxChars} characters`;
  return null;
}

/**
 * Colors a presence may carry: CSS hex (#rgb, #rgba, #rrggbb, #rrggbbaa, as editors' awareness
 * states use) or one of a few CSS names. Anything else is markup or CSS waiting for a dashboard that
 * puts it into a style attribute unescaped.
 */
const HEX_COLOR = /^#(?:[0-9a-f]{3,4}|[0-9a-f]{6}|[0-9a-f]{8})$/i;
export const NAMED_COLORS: ReadonlySet<string> = new Set([
  "black",
  "white",
  "gray",
  "red",
  "orange",
  "yellow",
  "green",
  "teal",
  "blue",
  "purple",
  "pink",
  "brown",
]);

export const isPresenceColor = (value: string) =>
  HEX_COLOR.test(value) || NAMED_COLORS.has(value.toLowerCase());

/** Why an announced color is not acceptable (null when absent or fine). */
export function colorProblem(value: unknown): string | null {
  const problem = stringProblem(value, "color", PRESENCE_LIMITS.colorChars);
  if (problem || value === undefined || value === null) return problem;
  if (!isPresenceColor(value as string))
    return `color must be a CSS hex color such as #30bced, or one of: ${[...NAMED_COLORS].join(", ")}`;
  return null;
}

/** A color from an awareness state as presence shows it: null unless it is one isPresenceColor accepts. */
export const presenceColor = (value: unknown): string | null =>
  typeof value === "string" && value.length <= PRESENCE_LIMITS.colorChars && isPresenceColor(value)
    ? value
    : null;

/** The fields both paths share: where someone is, and how they look. */
export function presenceFieldsProblem(fields: {
  name?: unknown;
  color?: unknown;
  branchId?: unknown;
  file?: unknown;
  cursor?: unknown;
}): { field: string; message: string } | null {
  const checks: [string, string | null][] = [
    ["name", stringProblem(fields.name, "name", PRESENCE_LIMITS.nameChars)],
    ["color", stringProblem(fields.color, "color", PRESENCE_LIMITS.colorChars)],
    ["branchId", stringProblem(fields.branchId, "branchId", PRESENCE_LIMITS.idChars)],
    ["file", stringProblem(fields.file, "file", PRESENCE_LIMITS.fileChars)],
    ["cursor", cursorProblem(fields.cursor)],
  ];
  for (const [field, message] of checks) if (message) return { field, message };
  return null;
}

/**
 * Parses one awareness state (the JSON text of an awareness update entry) and checks it: null (the
 * client left), or an object within the size and depth limits whose presence fields pass
 * presenceFieldsProblem. Returns the parsed state, or a reason.
 */
export function parseAwarenessState(
  text: string,
): { ok: true; state: Record<string, unknown> | null } | { ok: false; reason: string } {
  if (text.length > PRESENCE_LIMITS.stateBytes)
    return { ok: false, reason: `awareness state over ${PRESENCE_LIMITS.stateBytes} bytes` };
  if (jsonTextDepth(text, PRESENCE_LIMITS.stateDepth) > PRESENCE_LIMITS.stateDepth)
    return { ok: false, reason: `awareness state nests deeper than ${PRESENCE_LIMITS.stateDepth} levels` };
  let state: unknown;
  try {
    state = JSON.parse(text);
  } catch {
    return { ok: false, reason: "awareness state is not JSON" };
  }
  if (state === null) return { ok: true, state: null };
  if (typeof state !== "object" || Array.isArray(state))
    return { ok: false, reason: "awareness state must be an object or null" };
  const s = state as Record<string, unknown>;
  if (s.user !== undefined && (s.user === null || typeof s.user !== "object" || Array.isArray(s.user)))
    return { ok: false, reason: "awareness user must be an object" };
  const user = (s.user ?? {}) as Record<string, unknown>;
  const problem = presenceFieldsProblem({
    name: user.name,
    color: user.color,
    branchId: s.branchId,
    file: s.file,
    cursor: s.cursor,
  });
  if (problem) return { ok: false, reason: `awareness ${problem.message}` };
  return { ok: true, state: s };
}
