-- publish.lua: add the events of ONE stream, in the order given, each at most once.
--
-- KEYS[1]  the stream ("<RELAY_STREAM_PREFIX><topic>")
-- KEYS[2]  the stream's attempts ("{<stream>}:attempts"; the hash tag puts every key of the stream in
--          its cluster slot): attempt token -> record of a call whose Postgres transaction is not known
--          to have committed
-- KEYS[3]  the stream's orphans ("{<stream>}:orphans"): event_id -> token, the events of attempts that
--          failed or whose lease holder lost the slots; while any is kept, every call looks its
--          events up there, and an event found is taken out (this call's record holds it now)
-- KEYS[4]  the stream's fence ("{<stream>}:fence"): outbox slot -> the highest lease epoch a call for
--          this stream has carried for that slot
-- KEYS[5]  the markers of relays before attempt records ("{<stream>}:inflight", event_id -> entry id);
--          looked up while they last (they expire within an hour of the last such relay's call)
-- ARGV[1]  MAXLEN for approximate trimming ("0": no trimming)
-- ARGV[2]  TTL in milliseconds of the attempts (refreshed on every call) and of the orphans (set when
--          an attempt becomes one)
-- ARGV[3]  f: how many (slot, epoch) pairs follow: the outbox slots of this call's events and the
--          epoch each was leased with (sql/0007_slot_epochs.sql)
-- ARGV[4..3+2f] slot, epoch, slot, epoch, ...
-- then k, and k tokens of attempts whose transaction committed: their records go
-- then a, and a tokens of attempts that failed (or whose outcome is unknown): their records move
--          to the orphans
-- then the token of this call ("" when it adds no events) and its record:
--          "<slot>:<epoch>,...|<event_id>,<event_id>,..." (the pairs above, then the events in order)
-- then the envelope's values of each event, ENVELOPE_FIELD_COUNT per event, in the field order of
--          src/shared/Envelope.ts
--
-- Template: the relay renders ENVELOPE_FIELD_COUNT (the number of envelope fields) and ENVELOPE_XADD_ARGS
-- (`'event_id', ARGV[b], 'event_type', ARGV[b + 1], ...`) from that one field list when it loads this file.
--
-- Fencing: when a pair's epoch is older than the fence's, the slot has been leased again since (the
-- caller lost its lease while paused): the call fails with "FENCED ..." before it changes anything.
-- Otherwise the newer epochs are recorded, and every attempt record holding one of those slots at an
-- older epoch becomes an orphan: its lease holder is gone, so its transaction may never commit.
--
-- Once only: an event is added again only by a call after an attempt that added it did not commit.
-- That attempt's events are then orphans (its relay abandons it with its next call, or the fence
-- above orphans it when another lane leases the slots), so while orphans exist every event is
-- looked up in them first. Records of attempts that committed are dropped with the next call; a
-- crashed relay's records go with the attempts' TTL.
--
-- Returns the number of events when every one was added; otherwise one string per event: "+" added,
-- "=" already added by an earlier attempt whose transaction never committed, or "!<error>" when the
-- event can never be added (e.g. WRONGTYPE: the key holds another type). A transient error (OOM,
-- READONLY, LOADING, ...) aborts the call with that error, after recording the events it added.
--
-- Cost (docs/benchmarks.md): one record per call, not one marker per event, so the common case adds
-- to Redis' work per event only the XADD itself.

local stream = KEYS[1]
local attempts = KEYS[2]
local orphans = KEYS[3]
local fence = KEYS[4]
local legacy = KEYS[5]
local maxlen = tonumber(ARGV[1])
local ttl = ARGV[2]
local transient = { 'OOM', 'READONLY', 'LOADING', 'BUSY', 'MASTERDOWN', 'CLUSTERDOWN', 'TRYAGAIN',
                    'NOREPLICAS', 'MISCONF', 'NOTBUSY' }

local chunk = 200

-- Moves an attempt's events from its record to the orphans.
local function orphan(token, record)
  local ids = string.match(record, '|(.*)$')
  local pairs_ = {}
  if ids then
    for id in string.gmatch(ids, '[^,]+') do
      pairs_[#pairs_ + 1] = id
      pairs_[#pairs_ + 1] = token
      if #pairs_ >= 2 * chunk then
        redis.call('HSET', orphans, unpack(pairs_))
        pairs_ = {}
      end
    end
  end
  if #pairs_ > 0 then redis.call('HSET', orphans, unpack(pairs_)) end
  redis.call('HDEL', attempts, token)
  redis.call('PEXPIRE', orphans, ttl)
end

local fenced = tonumber(ARGV[3])
local newer = {}
if fenced > 0 then
  local slots = {}
  for i = 1, fenced do slots[i] = ARGV[2 + 2 * i] end
  local seen = redis.call('HMGET', fence, unpack(slots))
  local bumped = {}
  for i = 1, fenced do
    local have = tonumber(seen[i])
    local mine = tonumber(ARGV[3 + 2 * i])
    if have and have > mine then
      return redis.error_reply('FENCED slot ' .. slots[i] .. ' was leased again (epoch ' .. have ..
        ', this call ' .. mine .. ')')
    end
    if not have or have < mine then
      bumped[#bumped + 1] = slots[i]
      bumped[#bumped + 1] = ARGV[3 + 2 * i]
      newer[slots[i]] = mine
    end
  end
  if #bumped > 0 then
    redis.call('HSET', fence, unpack(bumped))
    -- Records holding a bumped slot at an older epoch belong to a lease holder that is gone.
    local all = redis.call('HGETALL', attempts)
    for i = 1, #all, 2 do
      local header = string.match(all[i + 1], '^([^|]*)|')
      if header then
        for slot, epoch in string.gmatch(header, '(%d+):(%d+)') do
          local now = newer[slot]
          if now and tonumber(epoch) < now then
            orphan(all[i], all[i + 1])
            break
          end
        end
      end
    end
  end
end

local at = 4 + 2 * fenced  -- ARGV index of k
local forget = tonumber(ARGV[at])
if forget > 0 then
  local tokens = { unpack(ARGV, at + 1, at + forget) }
  redis.call('HDEL', attempts, unpack(tokens))
  -- A committed attempt orphaned by a lease change in between: its events are no orphans.
  if redis.call('EXISTS', orphans) == 1 then
    local committed = {}
    for _, t in ipairs(tokens) do committed[t] = true end
    local all = redis.call('HGETALL', orphans)
    local gone = {}
    for i = 1, #all, 2 do
      if committed[all[i + 1]] then gone[#gone + 1] = all[i] end
    end
    for from = 1, #gone, chunk do
      redis.call('HDEL', orphans, unpack(gone, from, math.min(#gone, from + chunk - 1)))
    end
  end
end
at = at + 1 + forget  -- ARGV index of a
local abandon = tonumber(ARGV[at])
for i = at + 1, at + abandon do
  local record = redis.call('HGET', attempts, ARGV[i])
  if record then orphan(ARGV[i], record) end
end
at = at + 1 + abandon  -- ARGV index of this call's token
local token = ARGV[at]
local record = ARGV[at + 1]
local base = at + 2  -- ARGV index of the first event's first value
local fields = ENVELOPE_FIELD_COUNT
local count = (#ARGV - base + 1) / fields
if count == 0 then return 0 end

-- Event ids of this call an earlier attempt added without committing: orphans and older relays'
-- markers. Orphans found are taken out once this call has added the rest (its record holds them).
local added = nil
local found = {}
local function lookup(key, takeOut)
  if redis.call('EXISTS', key) == 0 then return end
  for from = 0, count - 1, chunk do
    local to = math.min(count, from + chunk) - 1
    local ids = {}
    for i = from, to do ids[#ids + 1] = ARGV[base + i * fields] end
    local hits = redis.call('HMGET', key, unpack(ids))
    for i = 1, #ids do
      if hits[i] then
        added = added or {}
        added[ids[i]] = true
        if takeOut then found[#found + 1] = ids[i] end
      end
    end
  end
end
lookup(orphans, true)
lookup(legacy, false)

-- out stays nil while every event is added; the first exception fills in "+" for those before it.
local out = nil
local function mark(i, value)
  if not out then
    out = {}
    for j = 1, i - 1 do out[j] = '+' end
  end
  out[i] = value
end
-- The record of the events this call stands for (added now or before), when that is not exactly the
-- caller's record (an event refused, an abort).
local function ownRecord(upto)
  local ids = {}
  for i = 0, upto - 1 do
    if not out or string.sub(out[i + 1], 1, 1) ~= '!' then ids[#ids + 1] = ARGV[base + i * fields] end
  end
  return string.match(record, '^[^|]*|') .. table.concat(ids, ',')
end

for i = 0, count - 1 do
  local b = base + i * fields
  if added and added[ARGV[b]] then
    mark(i + 1, '=')
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
          if i > 0 then
            redis.call('HSET', attempts, token, ownRecord(i))
            redis.call('PEXPIRE', attempts, ttl)
          end
          return redis.error_reply(err)
        end
      end
      mark(i + 1, '!' .. err)
    elseif out then
      out[i + 1] = '+'
    end
  end
end
redis.call('HSET', attempts, token, out and ownRecord(count) or record)
redis.call('PEXPIRE', attempts, ttl)
for from = 1, #found, chunk do
  redis.call('HDEL', orphans, unpack(found, from, math.min(#found, from + chunk - 1)))
end
if out then return out end
return count
