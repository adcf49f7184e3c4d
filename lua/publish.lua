-- publish.lua: add the events of ONE stream, in the order given, each at most once.
--
-- KEYS[1]  the stream ("<RELAY_STREAM_PREFIX><topic>")
-- KEYS[2]  the stream's in-flight marker hash ("{<stream>}:inflight": its hash tag puts it in the
--          stream's cluster slot), event_id -> entry id of events added but not yet acknowledged
--          in Postgres
-- KEYS[3]  the stream's fence ("{<stream>}:fence", same cluster slot): outbox slot -> the highest lease
--          epoch a call for this stream has carried for that slot
-- ARGV[1]  MAXLEN for approximate trimming ("0": no trimming)
-- ARGV[2]  TTL of the marker hash in milliseconds (refreshed on every call)
-- ARGV[3]  f: how many (slot, epoch) pairs follow: the outbox slots of this call's events and the
--          epoch each was leased with (sql/0007_slot_epochs.sql)
-- ARGV[4..3+2f] slot, epoch, slot, epoch, ...
-- ARGV[4+2f] k: how many markers to drop before adding anything (events of earlier batches whose
--          deletion has committed since; the relay sends them with its next call instead of an HDEL
--          of their own)
-- ARGV[5+2f..4+2f+k] their event ids
-- ARGV[5+2f+k..] the envelope's values of each event, ENVELOPE_FIELD_COUNT per event, in the field order of
--          src/shared/Envelope.ts
--
-- Template: the relay renders ENVELOPE_FIELD_COUNT (the number of envelope fields) and ENVELOPE_XADD_ARGS
-- (`'event_id', ARGV[b], 'event_type', ARGV[b + 1], ...`) from that one field list when it loads this file.
--
-- Fencing: when a pair's epoch is older than the fence's, the slot has been leased again since (the
-- caller lost its lease while paused): the call fails with "FENCED ..." before it changes anything.
-- Otherwise the newer epochs are recorded. The fence has no TTL: it must outlive any pause.
--
-- Returns one string per event: the new entry id; "=<entry id>" when the event was already added by
-- an earlier attempt whose acknowledgement in Postgres never happened (crash between XADD and
-- COMMIT); or "!<error>" when the event can never be added (e.g. WRONGTYPE: the key holds another
-- type). A transient error (OOM, READONLY, LOADING, ...) aborts the call with that error: the relay
-- retries the whole batch, and the markers make the retry skip what this call already added.
-- The relay drops markers once its Postgres transaction committed (through ARGV[3..] of its next call
-- for the stream, or an HDEL when it goes idle), so the hash holds only events in flight or just
-- committed; the TTL clears what a crash leaves behind.
--
-- Cost (docs/benchmarks.md compares it with bare XADDs): markers are looked up with one
-- HMGET and written with one HSET per chunk of events rather than one HGET and one HSET per event,
-- and the XADD arguments are passed directly instead of through a table and unpack().

local stream = KEYS[1]
local inflight = KEYS[2]
local fence = KEYS[3]
local maxlen = tonumber(ARGV[1])
local transient = { 'OOM', 'READONLY', 'LOADING', 'BUSY', 'MASTERDOWN', 'CLUSTERDOWN', 'TRYAGAIN',
                    'NOREPLICAS', 'MISCONF', 'NOTBUSY' }
local fenced = tonumber(ARGV[3])
if fenced > 0 then
  local slots = {}
  for i = 1, fenced do slots[i] = ARGV[2 + 2 * i] end
  local seen = redis.call('HMGET', fence, unpack(slots))
  local newer = {}
  for i = 1, fenced do
    local have = tonumber(seen[i])
    local mine = tonumber(ARGV[3 + 2 * i])
    if have and have > mine then
      return redis.error_reply('FENCED slot ' .. slots[i] .. ' was leased again (epoch ' .. have ..
        ', this call ' .. mine .. ')')
    end
    if not have or have < mine then
      newer[#newer + 1] = slots[i]
      newer[#newer + 1] = ARGV[3 + 2 * i]
    end
  end
  if #newer > 0 then redis.call('HSET', fence, unpack(newer)) end
end
local at = 4 + 2 * fenced  -- ARGV index of k
local forget = tonumber(ARGV[at])
local chunk = 200
for from = at + 1, at + forget, chunk do
  redis.call('HDEL', inflight, unpack(ARGV, from, math.min(at + forget, from + chunk - 1)))
end
local base = at + 1 + forget  -- ARGV index of the first event's first value
local fields = ENVELOPE_FIELD_COUNT
local count = (#ARGV - base + 1) / fields
local out = {}
local pairs_ = {}  -- event_id, entry id, ... of this chunk's new entries
for from = 0, count - 1, chunk do
  local to = math.min(count, from + chunk) - 1
  local ids = {}
  for i = from, to do ids[#ids + 1] = ARGV[base + i * fields] end
  local existing = redis.call('HMGET', inflight, unpack(ids))
  for i = from, to do
    local b = base + i * fields
    local seen = existing[i - from + 1]
    if seen then
      out[#out + 1] = '=' .. seen
    else
      local res
      if maxlen > 0 then
        res = redis.pcall('XADD', stream, 'MAXLEN', '~', maxlen, '*', ENVELOPE_XADD_ARGS)
      else
        res = redis.pcall('XADD', stream, '*', ENVELOPE_XADD_ARGS)
      end
      if type(res) == 'table' and res.err then
        local err = res.err
        for _, prefix in ipairs(transient) do
          if string.sub(err, 1, #prefix) == prefix then
            if #pairs_ > 0 then redis.call('HSET', inflight, unpack(pairs_)) end
            return redis.error_reply(err)
          end
        end
        out[#out + 1] = '!' .. err
      else
        pairs_[#pairs_ + 1] = ARGV[b]
        pairs_[#pairs_ + 1] = res
        out[#out + 1] = res
      end
    end
  end
  if #pairs_ > 0 then redis.call('HSET', inflight, unpack(pairs_)) pairs_ = {} end
end
if count > 0 then redis.call('PEXPIRE', inflight, ARGV[2]) end
return out
