//! The shared limiter on Redis: one atomic script per check, one round trip, the same GCRA
//! arithmetic as `gcra.rs` for buckets and the same failure log as `window.rs` for lockouts. Time comes from Redis (`TIME`), so instances whose clocks disagree
//! still agree on every decision. State keys are `<prefix>rl:<bucket>:<hash>` and
//! `<prefix>lo:<lockout>:<hash>`, where the hash is of the key value (no e-mail or IP is
//! stored in clear), each expiring when its state stops mattering.

use super::gcra::{Outcome, Rate};
use super::keys::KeyValue;
use crate::clock::Millis;
use crate::redis_client::{Connections, RedisFailure};
use redis::Script;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Times inside the scripts are milliseconds since this epoch (2023-11-14), which keeps
/// `time × limit` exact in Lua's doubles (limits are capped at 10,000 per window).
pub const EPOCH_MS: Millis = 1_700_000_000_000;

const BUCKET: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[3])
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local now_s = now * limit
local tau = (limit - 1) * window
local tat = tonumber(redis.call('GET', KEYS[1]) or now_s)
if tat < now_s then tat = now_s end
if tat - now_s > tau then
  return {0, 0, math.ceil((tat - tau - now_s) / limit), math.ceil((tat - now_s) / limit), now}
end
local new = tat + window
local reset = math.ceil((new - now_s) / limit)
redis.call('SET', KEYS[1], string.format('%d', new), 'PX', reset)
return {1, math.floor((now_s + limit * window - new) / window), 0, reset, now}
"#;

// Lockouts keep the failure log of `window.rs` in one hash: `b` = banned until, `l` = the log,
// oldest first, as `p<ms>` (an attempt in flight) or `f<ms>` (a failure). The same rules as
// `FailureLog` (PENDING_TTL is `window::PENDING_TTL_MS`), one atomic script per step.
const LOG_LIB: &str = r#"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[3])
end
local PENDING_TTL = 3600000
local function load(now, window)
  local log = {}
  local pending_ttl = math.max(window, PENDING_TTL)
  for kind, at in string.gmatch(redis.call('HGET', KEYS[1], 'l') or '', '(%a)(%d+)') do
    at = tonumber(at)
    local ttl = window
    if kind == 'p' then ttl = pending_ttl end
    if at > now - ttl then table.insert(log, {kind, at}) end
  end
  return log
end
local function expiry(e, window)
  if e[1] == 'p' then return e[2] + math.max(window, PENDING_TTL) end
  return e[2] + window
end
local function push(log, kind, now)
  local at = now
  if #log > 0 and log[#log][2] > at then at = log[#log][2] end
  table.insert(log, {kind, at})
end
local function store(log, now, window)
  if #log == 0 then
    redis.call('HDEL', KEYS[1], 'l')
  else
    local parts = {}
    for i, e in ipairs(log) do parts[i] = e[1] .. string.format('%d', e[2]) end
    redis.call('HSET', KEYS[1], 'l', table.concat(parts, ','))
  end
  local ttl = math.max(window, PENDING_TTL) + 1000
  local ban = tonumber(redis.call('HGET', KEYS[1], 'b') or '0')
  if ban - now + 1000 > ttl then ttl = ban - now + 1000 end
  redis.call('PEXPIRE', KEYS[1], ttl)
end
"#;

const RESERVE: &str = r#"
local now = now_ms()
local max = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local ban = tonumber(redis.call('HGET', KEYS[1], 'b') or '0')
if ban > now then return {0, ban - now, 1} end
local log = load(now, window)
if #log >= max then
  local next = expiry(log[1], window)
  for _, e in ipairs(log) do
    local x = expiry(e, window)
    if x < next then next = x end
  end
  local wait = next - now
  if wait < 1 then wait = 1 end
  return {0, wait, 0}
end
push(log, 'p', now)
store(log, now, window)
return {1, 0, 0}
"#;

const FINISH: &str = r#"
local now = now_ms()
local max = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local log = load(now, window)
for i, e in ipairs(log) do
  if e[1] == 'p' then table.remove(log, i) break end
end
local banned = 0
if ARGV[4] == '1' then
  push(log, 'f', now)
  local fails = 0
  for _, e in ipairs(log) do
    if e[1] == 'f' then fails = fails + 1 end
  end
  if fails >= max then
    redis.call('HSET', KEYS[1], 'b', string.format('%d', now + tonumber(ARGV[5])))
    log = {}
    banned = 1
  end
end
store(log, now, window)
return banned
"#;

/// What a lockout reservation answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserved {
    Allowed,
    /// Denied for `retry_after_ms`; `banned` when serving a ban (not just full).
    Denied {
        retry_after_ms: i64,
        banned: bool,
    },
}

pub struct RedisLimiter {
    conns: Arc<Connections>,
    prefix: String,
    bucket: Script,
    reserve: Script,
    finish: Script,
}

fn hash(key: &KeyValue) -> String {
    let mut h = Sha256::new();
    h.update([key.tag]);
    h.update(&key.bytes);
    hex::encode(&h.finalize()[..16])
}

impl RedisLimiter {
    pub fn new(conns: Arc<Connections>) -> Self {
        RedisLimiter {
            prefix: conns.settings().key_prefix.clone(),
            conns,
            bucket: Script::new(BUCKET),
            reserve: Script::new(&format!("{LOG_LIB}{RESERVE}")),
            finish: Script::new(&format!("{LOG_LIB}{FINISH}")),
        }
    }

    /// One bucket check. Returns the outcome and Redis's time (ms since the Unix epoch).
    pub async fn check(
        &self,
        bucket: &str,
        rate: Rate,
        key: &KeyValue,
    ) -> Result<(Outcome, Millis), RedisFailure> {
        let k = &format!("{}rl:{bucket}:{}", self.prefix, hash(key));
        let v: Vec<i64> = self
            .conns
            .run_retry(|mut c| async move {
                self.bucket
                    .key(k)
                    .arg(rate.limit)
                    .arg(rate.window_ms)
                    .arg(EPOCH_MS)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        let [allowed, remaining, retry_after_ms, reset_after_ms, now] = v[..] else {
            return Err(RedisFailure::Error("unexpected bucket script reply".into()));
        };
        Ok((
            Outcome {
                allowed: allowed == 1,
                remaining,
                retry_after_ms,
                reset_after_ms,
            },
            now + EPOCH_MS,
        ))
    }

    pub async fn reserve(
        &self,
        lockout: &str,
        rate: Rate,
        key: &KeyValue,
    ) -> Result<Reserved, RedisFailure> {
        let k = &format!("{}lo:{lockout}:{}", self.prefix, hash(key));
        let v: Vec<i64> = self
            .conns
            .run_retry(|mut c| async move {
                self.reserve
                    .key(k)
                    .arg(rate.limit)
                    .arg(rate.window_ms)
                    .arg(EPOCH_MS)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        match v[..] {
            [1, _, _] => Ok(Reserved::Allowed),
            [0, wait, banned] => Ok(Reserved::Denied {
                retry_after_ms: wait,
                banned: banned == 1,
            }),
            _ => Err(RedisFailure::Error(
                "unexpected reserve script reply".into(),
            )),
        }
    }

    pub async fn finish(
        &self,
        lockout: &str,
        rate: Rate,
        ban_ms: i64,
        key: &KeyValue,
        failed: bool,
    ) -> Result<(), RedisFailure> {
        let k = &format!("{}lo:{lockout}:{}", self.prefix, hash(key));
        self.conns
            .run_retry(|mut c| async move {
                self.finish
                    .key(k)
                    .arg(rate.limit)
                    .arg(rate.window_ms)
                    .arg(EPOCH_MS)
                    .arg(if failed { "1" } else { "0" })
                    .arg(ban_ms)
                    .invoke_async::<i64>(&mut c)
                    .await
            })
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_holds_reservations_as_long_as_the_local_log() {
        assert!(LOG_LIB.contains(&format!(
            "local PENDING_TTL = {}\n",
            super::super::window::PENDING_TTL_MS
        )));
    }
}
