/**
 * The Lua scripts of the Redis store. Each is one atomic step of Redis: every write of routes
 * (route, index, version, change log, outcome, PUBLISH) is one call of APPLY_SCRIPT, so no
 * reader sees half a change and an interrupted write leaves nothing behind.
 */
import type { Redis } from 'ioredis'

/**
 * Applies a batch of route changes as one new version, atomically.
 * KEYS: version, routes, route-meta, changes, bindings, route-keys, bindings-ready, outcome
 * ARGV: expectedVersion ('' = any), time, actor, source, rollbackTo ('' = none), changeLogLimit,
 *       channel, onlyIfSource ('' = any), note ('' = none), outcome TTL (ms), then 5-tuples: serviceName,
 *       canonical route JSON ('' to remove), claim ('x' exclusive, 's' shared), the route's
 *       binding keys (space-separated), expect ('*' = any, '' = absent, else the route JSON).
 *       The claim may carry the source recorded for that write instead of ARGV source ('s:discovery').
 * A write that changes nothing (same JSON, or removing an absent route), or whose stored route
 * was last changed from another source than onlyIfSource, is skipped; when every write is
 * skipped, nothing is written and the version stays.
 * The conflict index: bindings maps a binding key to the services holding it (space-separated),
 * route-keys a service to its keys. An exclusive write whose key is held by a service outside
 * the batch (or by another write of the batch) is refused before anything is written.
 * Returns {-1, current} when expectedVersion does not match, {-2, serviceName, key, holder} on
 * a conflict, {-3, serviceName} when an expect guard fails, {-4} when the index has not been
 * built for the stored routes yet, else {version, changedCount, flags, before1, before2, ...}
 * where flags has a '1' for each write applied and a '0' for each skipped, and '' stands for
 * an absent before.
 * The outcome key (unique to this call) receives the reply as JSON, so a caller whose reply
 * was lost (timeout, dropped connection) can read what happened; when the key already exists
 * (RESOLVE_SCRIPT marked the call 'cancelled'), the script does nothing and returns {-5}.
 */
export const APPLY_SCRIPT = `
local function split(s)
  local t = {}
  if s then for w in string.gmatch(s, '%S+') do t[#t + 1] = w end end
  return t
end
-- The outcome key: written with this call's reply, or 'cancelled' by a read-back that gave up on it.
if redis.call('EXISTS', KEYS[8]) == 1 then return {-5} end
local function done(out)
  redis.call('SET', KEYS[8], cjson.encode(out), 'PX', ARGV[10])
  return out
end
if redis.call('EXISTS', KEYS[7]) == 0 and redis.call('HLEN', KEYS[2]) > 0 then return done({-4}) end
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if ARGV[1] ~= '' and tonumber(ARGV[1]) ~= current then return done({-1, current}) end
local befores = {}
local pending = {}
local flags = ''
for i = 11, #ARGV, 5 do
  local name, after, claim, keys, expect = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local ownSource = ARGV[4]
  if #claim > 1 then ownSource = string.sub(claim, 3); claim = string.sub(claim, 1, 1) end
  local before = redis.call('HGET', KEYS[2], name)
  befores[#befores + 1] = before or ''
  if expect ~= '*' and (before or '') ~= expect then return done({-3, name}) end
  local owned = true
  if ARGV[8] ~= '' and before then
    local m = redis.call('HGET', KEYS[3], name)
    owned = m ~= false and cjson.decode(m).source == ARGV[8]
  end
  if owned and ((after == '' and before) or (after ~= '' and before ~= after)) then
    pending[#pending + 1] = {name, before, after, claim, split(keys), ownSource}
    flags = flags .. '1'
  else
    flags = flags .. '0'
  end
end
if #pending == 0 then
  local out = {current, 0, flags}
  for _, b in ipairs(befores) do out[#out + 1] = b end
  return done(out)
end
local inBatch = {}
for _, p in ipairs(pending) do inBatch[p[1]] = true end
for _, p in ipairs(pending) do
  if p[4] == 'x' then
    for _, k in ipairs(p[5]) do
      for _, h in ipairs(split(redis.call('HGET', KEYS[5], k))) do
        if h ~= p[1] and not inBatch[h] then return done({-2, p[1], k, h}) end
      end
      for _, q in ipairs(pending) do
        if q[1] ~= p[1] then
          for _, k2 in ipairs(q[5]) do if k2 == k then return done({-2, p[1], k, q[1]}) end end
        end
      end
    end
  end
end
-- The index: first every old key of the batch out, then every new key in.
for _, p in ipairs(pending) do
  for _, k in ipairs(split(redis.call('HGET', KEYS[6], p[1]))) do
    local keep = {}
    for _, h in ipairs(split(redis.call('HGET', KEYS[5], k))) do
      if h ~= p[1] then keep[#keep + 1] = h end
    end
    if #keep == 0 then redis.call('HDEL', KEYS[5], k) else redis.call('HSET', KEYS[5], k, table.concat(keep, ' ')) end
  end
end
for _, p in ipairs(pending) do
  if p[3] == '' then
    redis.call('HDEL', KEYS[6], p[1])
  else
    redis.call('HSET', KEYS[6], p[1], table.concat(p[5], ' '))
    for _, k in ipairs(p[5]) do
      local cur = redis.call('HGET', KEYS[5], k)
      redis.call('HSET', KEYS[5], k, cur and (cur .. ' ' .. p[1]) or p[1])
    end
  end
end
redis.call('SET', KEYS[7], '1')
local v = redis.call('INCR', KEYS[1])
local time, actor = cjson.encode(ARGV[2]), cjson.encode(ARGV[3])
local rest = ''
if ARGV[5] ~= '' then rest = rest .. ',"rollbackTo":' .. ARGV[5] end
if ARGV[9] ~= '' then rest = rest .. ',"note":' .. cjson.encode(ARGV[9]) end
rest = rest .. '}'
for _, p in ipairs(pending) do
  local name, before, after = p[1], p[2], p[3]
  local source = cjson.encode(p[6])
  local tail = ',"actor":' .. actor .. ',"source":' .. source .. rest
  local operation = 'put'
  if after == '' then
    operation = 'remove'
    redis.call('HDEL', KEYS[2], name)
    redis.call('HDEL', KEYS[3], name)
  else
    redis.call('HSET', KEYS[2], name, after)
    redis.call('HSET', KEYS[3], name, '{"version":' .. v .. ',"updatedAt":' .. time .. ',"actor":' .. actor .. ',"source":' .. source .. '}')
  end
  -- serviceName comes right after version and time, so entries of one version sort by name.
  local entry = '{"version":' .. v .. ',"time":' .. time .. ',"serviceName":' .. cjson.encode(name) ..
    ',"operation":"' .. operation .. '","before":' .. (before or 'null') ..
    ',"after":' .. (after == '' and 'null' or after) .. tail
  redis.call('ZADD', KEYS[4], v, entry)
end
-- Trim to the newest changeLogLimit entries, but only by whole versions: a rollback writes
-- several entries under one version, and half of one would make a later rollback wrong.
local excess = redis.call('ZCARD', KEYS[4]) - tonumber(ARGV[6])
if excess > 0 then
  local last = redis.call('ZRANGE', KEYS[4], excess - 1, excess - 1, 'WITHSCORES')
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', last[2])
end
redis.call('PUBLISH', ARGV[7], v)
local out = {v, #pending, flags}
for _, b in ipairs(befores) do out[#out + 1] = b end
return done(out)
`

/**
 * Settles the outcome of an apply call whose reply was lost. KEYS: outcome. ARGV: TTL (ms) of
 * the 'cancelled' mark. Returns the call's reply (JSON) when it ran; otherwise marks it
 * 'cancelled', so that it can never run later (it checks the key first), and returns that.
 * Either answer is final: Redis runs scripts one at a time.
 */
export const RESOLVE_SCRIPT = `
local r = redis.call('GET', KEYS[1])
if r then return r end
redis.call('SET', KEYS[1], 'cancelled', 'PX', ARGV[1])
return 'cancelled'
`

/**
 * Builds the conflict index for routes stored before it existed (or after it was lost).
 * KEYS: version, bindings, route-keys, bindings-ready. ARGV: expectedVersion, then pairs
 * (serviceName, binding keys space-separated). Returns 0 when the version moved meanwhile.
 */
export const INDEX_SCRIPT = `
if tonumber(redis.call('GET', KEYS[1]) or '0') ~= tonumber(ARGV[1]) then return 0 end
redis.call('DEL', KEYS[2], KEYS[3])
for i = 2, #ARGV, 2 do
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
  for k in string.gmatch(ARGV[i + 1], '%S+') do
    local cur = redis.call('HGET', KEYS[2], k)
    redis.call('HSET', KEYS[2], k, cur and (cur .. ' ' .. ARGV[i]) or ARGV[i])
  end
end
redis.call('SET', KEYS[4], '1')
return 1
`

/**
 * Live proxies, forgetting expired ones. KEYS: proxies, proxy-expiry. ARGV: now.
 * Returns the status JSON of each live proxy.
 */
export const LIST_PROXIES_SCRIPT = `
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
for _, id in ipairs(expired) do redis.call('HDEL', KEYS[1], id) end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
local ids = redis.call('ZRANGE', KEYS[2], 0, -1)
if #ids == 0 then return {} end
return redis.call('HMGET', KEYS[1], unpack(ids))
`

/** KEYS: lease. ARGV: holder, now, expiresAt, ttlMs. 1 when holder holds the lease afterwards. */
export const ACQUIRE_LEASE_SCRIPT = `
local cur = redis.call('HMGET', KEYS[1], 'holder', 'expiresAt')
if cur[1] and cur[1] ~= ARGV[1] and tonumber(cur[2]) > tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'holder', ARGV[1], 'expiresAt', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
`

/** KEYS: lease. ARGV: holder. Deletes the lease only if holder holds it. */
export const RELEASE_LEASE_SCRIPT = `
if redis.call('HGET', KEYS[1], 'holder') == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
`

/**
 * Stores, replaces or removes one certificate as a new version, atomically (certificates keep
 * their own keys, so this never touches the routes).
 * KEYS: version, certificates, certificate-meta, certificate-changes, outcome
 * ARGV: op ('put' | 'remove'), name, record JSON (put), chainPem (put), time, actor, source,
 *       channel, changeLogLimit, fingerprint (put), outcome TTL (ms)
 * A put whose chain equals the stored one, or a remove of an absent name, changes nothing.
 * Returns {version, changed, before record JSON or ''}, also written to the outcome key (see
 * APPLY_SCRIPT); {-5, 0, ''} when a read-back cancelled the call before it ran.
 */
export const CERTIFICATE_SCRIPT = `
-- The outcome key: written with this call's reply, or 'cancelled' by a read-back that gave up on it.
if redis.call('EXISTS', KEYS[5]) == 1 then return {-5, 0, ''} end
local function done(out)
  redis.call('SET', KEYS[5], cjson.encode(out), 'PX', ARGV[11])
  return out
end
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local before = redis.call('HGET', KEYS[2], ARGV[2])
local beforeFp = cjson.null
if before then beforeFp = cjson.decode(before).info.fingerprint end
if ARGV[1] == 'put' then
  if before and cjson.decode(before).chainPem == ARGV[4] then return done({current, 0, before}) end
elseif not before then
  return done({current, 0, ''})
end
local v = redis.call('INCR', KEYS[1])
local fp = cjson.null
if ARGV[1] == 'put' then
  fp = ARGV[10]
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
  redis.call('HSET', KEYS[3], ARGV[2], cjson.encode({version = v, updatedAt = ARGV[5], actor = ARGV[6], source = ARGV[7], fingerprint = ARGV[10]}))
else
  redis.call('HDEL', KEYS[2], ARGV[2])
  redis.call('HDEL', KEYS[3], ARGV[2])
end
redis.call('ZADD', KEYS[4], v, cjson.encode({version = v, time = ARGV[5], operation = ARGV[1], name = ARGV[2], fingerprint = fp, previousFingerprint = beforeFp, actor = ARGV[6], source = ARGV[7]}))
local excess = redis.call('ZCARD', KEYS[4]) - tonumber(ARGV[9])
if excess > 0 then redis.call('ZREMRANGEBYRANK', KEYS[4], 0, excess - 1) end
redis.call('PUBLISH', ARGV[8], v)
return done({v, 1, before or ''})
`

/**
 * Publishes or withdraws an ACME HTTP-01 answer as a new version.
 * KEYS: version, challenges, outcome. ARGV: token, keyAuthorization ('' = withdraw), channel, outcome TTL (ms).
 * Returns {version} (unchanged when nothing changed), also written to the outcome key; {-5}
 * when a read-back cancelled the call before it ran.
 */
export const CHALLENGE_SCRIPT = `
if redis.call('EXISTS', KEYS[3]) == 1 then return {-5} end
local function done(out)
  redis.call('SET', KEYS[3], cjson.encode(out), 'PX', ARGV[4])
  return out
end
local before = redis.call('HGET', KEYS[2], ARGV[1])
if ARGV[2] == '' then
  if not before then return done({tonumber(redis.call('GET', KEYS[1]) or '0')}) end
  redis.call('HDEL', KEYS[2], ARGV[1])
else
  if before == ARGV[2] then return done({tonumber(redis.call('GET', KEYS[1]) or '0')}) end
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
end
local v = redis.call('INCR', KEYS[1])
redis.call('PUBLISH', ARGV[3], v)
return done({v})
`

export interface Scripts {
  tetherIndex(...args: Array<string | number>): Promise<number>
  tetherCertificate(...args: Array<string | number>): Promise<[number, number, string]>
  tetherChallenge(...args: Array<string | number>): Promise<[number]>
  tetherApply(...args: Array<string | number>): Promise<Array<number | string>>
  tetherResolve(...args: Array<string | number>): Promise<string>
  tetherListProxies(...args: Array<string | number>): Promise<Array<string | null>>
  tetherAcquireLease(...args: Array<string | number>): Promise<number>
  tetherReleaseLease(...args: Array<string | number>): Promise<number>
}

/** Registers every script on `redis` and returns it typed with them. */
export function defineScripts(redis: Redis): Scripts {
  redis.defineCommand('tetherApply', { numberOfKeys: 8, lua: APPLY_SCRIPT })
  redis.defineCommand('tetherResolve', { numberOfKeys: 1, lua: RESOLVE_SCRIPT })
  redis.defineCommand('tetherIndex', { numberOfKeys: 4, lua: INDEX_SCRIPT })
  redis.defineCommand('tetherListProxies', { numberOfKeys: 2, lua: LIST_PROXIES_SCRIPT })
  redis.defineCommand('tetherAcquireLease', { numberOfKeys: 1, lua: ACQUIRE_LEASE_SCRIPT })
  redis.defineCommand('tetherReleaseLease', { numberOfKeys: 1, lua: RELEASE_LEASE_SCRIPT })
  redis.defineCommand('tetherCertificate', { numberOfKeys: 5, lua: CERTIFICATE_SCRIPT })
  redis.defineCommand('tetherChallenge', { numberOfKeys: 3, lua: CHALLENGE_SCRIPT })
  return redis as unknown as Scripts
}
