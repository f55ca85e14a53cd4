//! The Redis backend: guard documents under `<prefix>:<kind>:<key>`, replaced by a Lua
//! compare-and-set (read with the server's `TIME` in one round trip, the new document written
//! only if nobody wrote in between, else read again), with a TTL so abandoned keys expire;
//! bulkhead slots as leases in a sorted set (member = owner, score = expiry by the server's
//! clock), taken, renewed and dropped by Lua scripts so each step is atomic on the server.
//! Every failure to talk to the server is `BackendError::Unavailable` naming the URL without
//! its password. This file must not decide guard behaviour.

use std::cell::RefCell;
use std::time::Duration;

use super::backend::{BackendError, LeaseKeeper, Rewrite, Slot, StateBackend};
use super::resp::{Conn, Reply, RespError, Target};

/// Replace KEYS[1] with ARGV[3] (TTL ARGV[4] ms, 0 = none) if it still is what was read:
/// missing when ARGV[1] is "0", else ARGV[2]. Returns 1 when written.
const CAS: &str = r#"
local cur = redis.call('GET', KEYS[1])
local same
if ARGV[1] == '0' then same = (cur == false) else same = (cur == ARGV[2]) end
if not same then return 0 end
if ARGV[4] == '0' then
  redis.call('SET', KEYS[1], ARGV[3])
else
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
end
return 1
"#;

/// Take a slot of KEYS[1] for owner ARGV[2] if fewer than ARGV[1] live leases are held
/// (or the owner holds one already), for ARGV[3] ms. Returns 1 when held.
const TAKE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[2]) or redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + lease, ARGV[2])
  if redis.call('PTTL', KEYS[1]) < 2 * lease then redis.call('PEXPIRE', KEYS[1], 2 * lease) end
  return 1
end
return 0
"#;

/// Extend owner ARGV[1]'s lease on KEYS[1] to now + ARGV[2] ms, unless it already lapsed.
const RENEW: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[2])
local until_ms = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not until_ms or tonumber(until_ms) <= now then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 0
end
redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
if redis.call('PTTL', KEYS[1]) < 2 * lease then redis.call('PEXPIRE', KEYS[1], 2 * lease) end
return 1
"#;

/// Live leases on KEYS[1].
const COUNT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
"#;

/// Compare-and-set rounds before giving up (each conflict means someone else's write landed).
const MAX_CAS_ROUNDS: u32 = 200;

pub struct RedisBackend {
    target: Target,
    prefix: String,
    conn: RefCell<Option<Conn>>,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// `TIME`'s answer in epoch milliseconds.
fn time_ms(r: Reply) -> Result<i64, RespError> {
    match r.ok()? {
        Reply::Array(Some(v)) if v.len() == 2 => Ok(v[0].int()? * 1000 + v[1].int()? / 1000),
        other => Err(RespError::Protocol(format!("TIME answered {other:?}"))),
    }
}

/// One connection used by a lease keeper's thread (opened when first needed).
struct Lone {
    target: Target,
    conn: Option<Conn>,
}

impl Lone {
    fn cmd(&mut self, args: &[&[u8]]) -> Result<Reply, RespError> {
        if self.conn.is_none() {
            self.conn = Some(Conn::open(&self.target)?);
        }
        let r = match self.conn.as_mut() {
            Some(c) => c.cmd(args),
            None => Err(RespError::Io("no connection".into())),
        };
        if r.is_err() {
            self.conn = None;
        }
        r
    }
}

impl RedisBackend {
    pub fn new(target: Target, prefix: String) -> RedisBackend {
        RedisBackend {
            target,
            prefix,
            conn: RefCell::new(None),
        }
    }

    fn key(&self, kind: &str, key: &str) -> String {
        format!("{}:{kind}:{key}", self.prefix)
    }

    fn unavailable(&self, e: RespError) -> BackendError {
        BackendError::Unavailable {
            backend: self.target.url.redacted(),
            message: e.to_string(),
        }
    }

    /// Runs `f` on the connection, opening it when needed; a connection that broke (the
    /// server restarted, an idle timeout) is opened again once.
    fn with_conn<R>(
        &self,
        f: impl Fn(&mut Conn) -> Result<R, RespError>,
    ) -> Result<R, BackendError> {
        let mut slot = self.conn.borrow_mut();
        let fresh = slot.is_none();
        for round in 0..2 {
            if slot.is_none() {
                *slot = Some(Conn::open(&self.target).map_err(|e| self.unavailable(e))?);
            }
            let Some(conn) = slot.as_mut() else {
                break;
            };
            match f(conn) {
                Ok(r) => return Ok(r),
                Err(e @ (RespError::Io(_) | RespError::Protocol(_))) => {
                    *slot = None;
                    if fresh || round == 1 {
                        return Err(self.unavailable(e));
                    }
                }
                Err(e) => return Err(self.unavailable(e)),
            }
        }
        Err(self.unavailable(RespError::Io("no connection".into())))
    }

    fn get_with_time(&self, full: &str) -> Result<(Option<Vec<u8>>, i64), BackendError> {
        self.with_conn(|c| {
            let mut r = c.pipeline(&[&[b"GET", full.as_bytes()], &[b"TIME"]])?;
            let time = r
                .pop()
                .ok_or_else(|| RespError::Protocol("no reply".into()))?;
            let doc = r
                .pop()
                .ok_or_else(|| RespError::Protocol("no reply".into()))?;
            Ok((doc.bulk()?, time_ms(time)?))
        })
    }
}

impl StateBackend for RedisBackend {
    fn describe(&self) -> String {
        self.target.url.redacted()
    }

    fn check(&self) -> Result<(), BackendError> {
        if self.conn.borrow().is_some() {
            return Ok(());
        }
        self.with_conn(|c| c.cmd(&[b"PING"])?.ok().map(|_| ()))
    }

    fn read(
        &self,
        kind: &str,
        key: &str,
        _local_now: i64,
    ) -> Result<(Option<Vec<u8>>, i64), BackendError> {
        self.get_with_time(&self.key(kind, key))
    }

    fn update(
        &self,
        kind: &str,
        key: &str,
        ttl: Option<Duration>,
        _local_now: i64,
        _durable: bool,
        f: &mut Rewrite<'_>,
    ) -> Result<i64, BackendError> {
        let full = self.key(kind, key);
        let ttl = ttl.map(ms).unwrap_or(0).to_string();
        for round in 0..MAX_CAS_ROUNDS {
            let (old, now) = self.get_with_time(&full)?;
            let new = f(old.as_deref(), now);
            let existed: &[u8] = if old.is_some() { b"1" } else { b"0" };
            let expected = old.as_deref().unwrap_or_default();
            let written = self.with_conn(|c| {
                c.cmd(&[
                    b"EVAL",
                    CAS.as_bytes(),
                    b"1",
                    full.as_bytes(),
                    existed,
                    expected,
                    &new,
                    ttl.as_bytes(),
                ])?
                .int()
            })?;
            if written == 1 {
                return Ok(now);
            }
            if round > 2 {
                // Many writers on one key: step aside a little so one of them gets through.
                let pause = crate::sys::entropy::random_u64() % 2000;
                std::thread::sleep(Duration::from_micros(pause));
            }
        }
        Err(self.unavailable(RespError::Protocol(format!(
            "{full} kept changing under {MAX_CAS_ROUNDS} compare-and-set rounds"
        ))))
    }

    fn take_slot(
        &self,
        key: &str,
        max: u32,
        owner: &str,
        lease: Duration,
    ) -> Result<Option<Slot>, BackendError> {
        let full = self.key("bulkhead", key);
        let (max_s, lease_s) = (max.max(1).to_string(), ms(lease).to_string());
        let got = self.with_conn(|c| {
            c.cmd(&[
                b"EVAL",
                TAKE.as_bytes(),
                b"1",
                full.as_bytes(),
                max_s.as_bytes(),
                owner.as_bytes(),
                lease_s.as_bytes(),
            ])?
            .int()
        })?;
        if got != 1 {
            return Ok(None);
        }
        let mut lone = Lone {
            target: self.target.clone(),
            conn: None,
        };
        let owner = owner.to_string();
        let keeper = LeaseKeeper::start(lease, move |last| {
            // A renewal that fails (the server went away) is not retried: the lease then
            // lapses on its own, which is the documented bound.
            let _ = if last {
                lone.cmd(&[b"ZREM", full.as_bytes(), owner.as_bytes()])
            } else {
                lone.cmd(&[
                    b"EVAL",
                    RENEW.as_bytes(),
                    b"1",
                    full.as_bytes(),
                    owner.as_bytes(),
                    lease_s.as_bytes(),
                ])
            };
        });
        Ok(Some(Slot::Lease(keeper)))
    }

    fn slots_taken(&self, key: &str, _max: u32) -> Result<u32, BackendError> {
        let full = self.key("bulkhead", key);
        let n = self.with_conn(|c| {
            c.cmd(&[b"EVAL", COUNT.as_bytes(), b"1", full.as_bytes()])?
                .int()
        })?;
        Ok(u32::try_from(n).unwrap_or(0))
    }
}
