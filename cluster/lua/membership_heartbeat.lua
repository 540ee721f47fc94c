-- Heartbeat of a registered worker: push its expiry to now + TTL, store its
-- health record, and tell it when the next other worker's heartbeat expires
-- (so it looks for dead workers exactly then, instead of polling) and the
-- current config version and registry generation (so an idle worker catches
-- up with a push it did not hear, in the same round trip).
-- "now" is Redis TIME. A worker that was pruned (declared dead) is not
-- revived here, nor is one whose id another process instance registered
-- since: it gets 0 and must register again (or stop).
--
-- KEYS[1]  live      zset  worker id -> heartbeat expiry (ms)
-- KEYS[2]  beats     zset  worker id -> last heartbeat (ms)
-- KEYS[3]  state     hash  worker id -> state
-- KEYS[4]  instance  hash  worker id -> instance token
-- KEYS[5]  health    hash  (optional, with KEYS[6]) the worker's health record
-- KEYS[6]  cached    set   the worker's cached sessions (its TTL is renewed)
-- KEYS[7]  config    string  (optional, with KEYS[8]) the config version counter
-- KEYS[8]  registry  string  the registry generation counter
-- ARGV[1]  worker id
-- ARGV[2]  heartbeat TTL in ms
-- ARGV[3]  instance token of the caller
-- ARGV[4]  health record (JSON; with KEYS[5])
-- Returns: {1, state, next expiry, cached digest, config version, registry
--          generation, primary} when registered: next expiry is the ms from now until
--          another worker's heartbeat expires (nil: no other worker; <= 0: one
--          is dead already), cached digest the health hash's "cached" field
--          (false when unset), the two counters (0 when unset; false without
--          KEYS[7]), primary the replication id of the server this ran on ("" where
--          INFO is refused): a worker that sees it change knows a failover
--          happened and checks its in-flight list against what it runs;
--          {0, ""} when not registered (or not this instance).
local state = redis.call('HGET', KEYS[3], ARGV[1])
if not state or redis.call('HGET', KEYS[4], ARGV[1]) ~= ARGV[3] then
  return {0, ''}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expiry = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not expiry or tonumber(expiry) <= now then
  -- Expired, so survivors may be recovering this worker's turns right now
  return {0, ''}
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('ZADD', KEYS[2], now, ARGV[1])
local digest = false
if #KEYS >= 6 then
  redis.call('HSET', KEYS[5], 'record', ARGV[4])
  digest = redis.call('HGET', KEYS[5], 'cached')
  redis.call('PEXPIRE', KEYS[5], ARGV[2])
  redis.call('PEXPIRE', KEYS[6], ARGV[2])
end
local next_expiry = false
local first = redis.call('ZRANGE', KEYS[1], 0, 1, 'WITHSCORES')
for i = 1, #first, 2 do
  if first[i] ~= ARGV[1] then
    next_expiry = tonumber(first[i + 1]) - now
    break
  end
end
local config_version = false
local registry_generation = false
if #KEYS >= 8 then
  config_version = tonumber(redis.call('GET', KEYS[7]) or '0')
  registry_generation = tonumber(redis.call('GET', KEYS[8]) or '0')
end
local info = redis.pcall('INFO', 'replication')
local primary = type(info) == 'string' and string.match(info, 'master_replid%p(%x+)') or ''
return {1, state, next_expiry, digest, config_version, registry_generation, primary}
