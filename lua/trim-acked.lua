-- trim-acked.lua: trim ONE stream below what every one of its consumer groups has acknowledged.
--
-- KEYS[1]  the stream
--
-- The first entry to keep is the smallest, over the stream's groups, of the group's oldest pending
-- entry (delivered, not acknowledged) and the entry after its last-delivered id (its first unread
-- one). XTRIM MINID removes only entries below that id, so no pending and no unread entry of any
-- group goes. One script, so no group reads, claims or is created between the look and the trim.
-- A stream without groups is left as it is: readers without a group leave no trace of what they read.
--
-- Returns the number of entries removed.

local stream = KEYS[1]
local groups = redis.call('XINFO', 'GROUPS', stream)
if #groups == 0 then return 0 end

local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end

local function below(ms1, seq1, ms2, seq2)
  return ms1 < ms2 or (ms1 == ms2 and seq1 < seq2)
end

local keep_ms, keep_seq
for _, group in ipairs(groups) do
  local name, last
  for i = 1, #group, 2 do
    if group[i] == 'name' then name = group[i + 1] elseif group[i] == 'last-delivered-id' then last = group[i + 1] end
  end
  local ms, seq = parse(last)
  -- The entry after the last delivered one; past 2^53 the number is inexact, so keep that entry too.
  if seq < 9007199254740991 then seq = seq + 1 end
  local pending = redis.call('XPENDING', stream, name)
  if pending[1] > 0 then
    local pms, pseq = parse(pending[2])
    if below(pms, pseq, ms, seq) then ms, seq = pms, pseq end
  end
  if keep_ms == nil or below(ms, seq, keep_ms, keep_seq) then keep_ms, keep_seq = ms, seq end
end
return redis.call('XTRIM', stream, 'MINID', string.format('%.0f-%.0f', keep_ms, keep_seq))
