// The bus's Lua scripts over Redis Streams (one stream per topic). Each entry holds the payload (p),
// the id of the entry before it (v: how a reader proves it missed nothing) and the publisher's unique
// id (u: a publish resent after a dropped connection is recognised and not appended twice).
import { lua } from "./redis-commands.ts";

const HELPERS = `
local function parse(id)
  local dash = string.find(id, '-', 1, true)
  return tonumber(string.sub(id, 1, dash - 1)), tonumber(string.sub(id, dash + 1))
end
local function later(a, b)
  local am, as = parse(a)
  local bm, bs = parse(b)
  return am > bm or (am == bm and as > bs)
end
local function field(fields, name)
  for i = 1, #fields, 2 do
    if fields[i] == name then return fields[i + 1] end
  end
  return nil
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
`;

/**
 * KEYS[1] the topic's stream. ARGV: payload, max length (approximate trim), time to live (ms, renewed
 * by every publish, so idle topics vanish), wake-up channel ('' for none), wake-up message, publish id.
 * The id is explicit: the server's clock in ms, and a sequence below 1000 within one ms (so ids map to
 * exact numbers; a 1000th event in one ms takes the next ms). Returns the entry's id.
 */
export const PUBLISH = lua(`${HELPERS}
local recent = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 16)
for i = 1, #recent do
  if field(recent[i][2], 'u') == ARGV[6] then return recent[i][1] end
end
local ms, seq, prev = now_ms(), 0, '0-0'
if #recent > 0 then
  prev = recent[1][1]
  local lms, lseq = parse(prev)
  if lms >= ms then
    if lseq < 999 then ms, seq = lms, lseq + 1 else ms, seq = lms + 1, 0 end
  end
end
local id = string.format('%d-%d', ms, seq)
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], id, 'p', ARGV[1], 'v', prev, 'u', ARGV[6])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if ARGV[4] ~= '' then redis.call('PUBLISH', ARGV[4], ARGV[5]) end
return id
`);

/** KEYS[1] the topic's stream. Its latest id, or "just before now" (server clock) when it has none. */
export const LAST_ID = lua(`${HELPERS}
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #last > 0 then return last[1][1] end
return string.format('%d-%d', now_ms() - 1, 999)
`);

/**
 * KEYS[1] the topic's stream; ARGV: cursor, count, retention (ms). Returns {gap, entries after the
 * cursor}. gap = 1 when events after the cursor may be gone: the first entry after it was preceded by
 * one the stream no longer holds (trimmed), or the stream started anew (expired while idle) more than
 * a retention period after the cursor, or it is gone and the cursor is older than the retention.
 * Cursor 0-0 means "whatever is retained" and is never a gap.
 */
export const RANGE = lua(`${HELPERS}
local cursor = ARGV[1]
local entries = redis.call('XRANGE', KEYS[1], '(' .. cursor, '+', 'COUNT', ARGV[2])
local gap = 0
if cursor ~= '0-0' then
  local cms = parse(cursor)
  local retention = tonumber(ARGV[3])
  if #entries > 0 then
    local prev = field(entries[1][2], 'v') or '0-0'
    if later(prev, cursor) then
      gap = 1
    elseif prev == '0-0' and parse(entries[1][1]) - cms > retention then
      gap = 1
    end
  elseif redis.call('EXISTS', KEYS[1]) == 0 and now_ms() - cms > retention then
    gap = 1
  end
end
return {gap, entries}
`);
