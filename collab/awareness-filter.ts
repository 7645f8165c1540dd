// Awareness frames are filtered before y-protocols applies them (its applyAwarenessUpdate applies
// every entry it is given). A socket may only set the awareness states of client ids it introduced
// itself, and only a few of them; every state must pass the presence checks (size, depth, cursor
// shape). Entries that break a rule are dropped, the rest apply; nothing dropped is relayed.
//
// Stock y-websocket clients echo every awareness change they receive back to the server (their
// awareness "update" handler broadcasts all changed clients). Those echoes are never newer than what
// the server holds, so y-protocols would ignore them: they are skipped first, quietly, and never
// claim an id.
//
// The awareness update format (y-protocols/awareness encodeAwarenessUpdate):
//   varUint count, then per entry: varUint clientID, varUint clock, varString JSON state ("null" = gone)
import * as decoding from "lib0/decoding";
import * as encoding from "lib0/encoding";
import type { Awareness } from "y-protocols/awareness";
import { PRESENCE_LIMITS, parseAwarenessState } from "../resolvers/presence-input.ts";

/** Client ids one socket may introduce (a tab has one; a few leaves room for reconnect races). */
export const MAX_CLIENTS_PER_SOCKET = 4;
/** Entries looked at in one frame; the rest are ignored unread (a client sends its own, one). */
const MAX_ENTRIES_PER_FRAME = 16;

/**
 * Which socket introduced each client id of a room: first come, held until that socket leaves. The
 * one exception is the same signed-in user on another socket (a tab that reconnected before the
 * server noticed its old socket was gone): it takes the id over, so its presence does not vanish
 * until the old socket times out. Another user, or a share-link guest, never can.
 */
export class AwarenessOwners<Owner> {
  private readonly owners = new Map<number, Owner>();
  private readonly byOwner = new Map<Owner, Set<number>>();

  constructor(
    /** Ids nobody may claim (the server's own awareness client id). */
    private readonly reserved: ReadonlySet<number>,
    /** The signed-in user an owner acts for (null: a guest). */
    private readonly userOf: (owner: Owner) => string | null,
  ) {}

  /**
   * Whether `owner` holds `clientId` or may claim it now (which it then does), and if not, why: the id
   * is another socket's ("foreign"), or this socket holds as many as it may ("full").
   */
  claim(owner: Owner, clientId: number): "ok" | "foreign" | "full" {
    const holder = this.owners.get(clientId);
    if (holder === owner) return "ok";
    if (this.reserved.has(clientId)) return "foreign";
    if (holder !== undefined) {
      const user = this.userOf(owner);
      if (user === null || user !== this.userOf(holder)) return "foreign";
    }
    const held = this.byOwner.get(owner) ?? new Set<number>();
    if (held.size >= MAX_CLIENTS_PER_SOCKET) return "full";
    if (holder !== undefined) this.byOwner.get(holder)?.delete(clientId);
    held.add(clientId);
    this.byOwner.set(owner, held);
    this.owners.set(clientId, owner);
    return "ok";
  }

  /** Forgets an owner's ids (it left); returns them so their states can be removed. */
  release(owner: Owner): number[] {
    const held = [...(this.byOwner.get(owner) ?? [])];
    this.byOwner.delete(owner);
    for (const id of held) this.owners.delete(id);
    return held;
  }
}

export interface FilteredAwareness {
  /** The entries that may apply, re-encoded in the same format (null when none may). */
  update: Uint8Array | null;
  /** Why entries were refused (for a log line); empty when none were. Echoes are not listed: stock
   * clients send those all the time. */
  dropped: string[];
}

/**
 * Keeps the entries of one awareness update that `owner` may set in `awareness`. Throws on a
 * malformed frame (the caller closes the socket as for any malformed message).
 */
export function filterAwarenessUpdate<Owner>(
  update: Uint8Array,
  owner: Owner,
  owners: AwarenessOwners<Owner>,
  awareness: Awareness,
): FilteredAwareness {
  const decoder = decoding.createDecoder(update);
  const count = decoding.readVarUint(decoder);
  const kept: { clientId: number; clock: number; json: string }[] = [];
  const dropped: string[] = [];
  for (let i = 0; i < Math.min(count, MAX_ENTRIES_PER_FRAME); i++) {
    const clientId = decoding.readVarUint(decoder);
    const clock = decoding.readVarUint(decoder);
    const raw = decoding.readVarUint8Array(decoder); // a varString is a length-prefixed UTF-8 array
    if (raw.byteLength > PRESENCE_LIMITS.stateBytes) {
      dropped.push(`client ${clientId}: state over ${PRESENCE_LIMITS.stateBytes} bytes`);
      continue;
    }
    const json = new TextDecoder().decode(raw);
    const parsed = parseAwarenessState(json);
    if (!parsed.ok) {
      dropped.push(`client ${clientId}: ${parsed.reason}`);
      continue;
    }
    // y-protocols' own rule: a newer clock, or a removal at the same clock of a state still held.
    const known = awareness.meta.get(clientId)?.clock;
    const applies =
      known === undefined ||
      known < clock ||
      (known === clock && parsed.state === null && awareness.states.has(clientId));
    if (!applies) continue; // an echo, or stale
    const claim = owners.claim(owner, clientId);
    if (claim === "full") dropped.push(`client ${clientId}: over ${MAX_CLIENTS_PER_SOCKET} per socket`);
    if (claim === "foreign") dropped.push(`client ${clientId}: another socket's awareness`);
    if (claim !== "ok") continue;
    kept.push({ clientId, clock, json });
  }
  if (kept.length === 0) return { update: null, dropped };
  const encoder = encoding.createEncoder();
  encoding.writeVarUint(encoder, kept.length);
  for (const { clientId, clock, json } of kept) {
    encoding.writeVarUint(encoder, clientId);
    encoding.writeVarUint(encoder, clock);
    encoding.writeVarString(encoder, json);
  }
  return { update: encoding.toUint8Array(encoder), dropped };
}
