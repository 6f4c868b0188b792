//! Per-client rate limits: GCRA (`governor`) keyed by client address, so a client gets a
//! steady rate with a small burst rather than a window that refills all at once. Its memory
//! stays bounded whatever the traffic: it tracks at most `max_clients` keys, pruning the ones
//! whose budget is full again when it reaches that, and forgetting all of them if a flood of
//! new addresses leaves nothing to prune (logged; the limit starts afresh rather than lock out
//! clients it has never seen). IPv6 clients are keyed by their /64.
//!
//! It is per process: with several API instances each one counts on its own, so the effective
//! limit is the configured one times the instance count. That is fine for its purpose (keeping
//! one client from costing the server work in a tight loop), and needs no shared store.
//!
//! Config keys read (by the caller that builds them): `livekit.join_per_minute`,
//! `archive.list_per_minute`, `stream.opens_per_minute`, `broadcast.connects_per_minute`.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::api::ApiError;

/// Clients tracked by default: enough for a busy station, ~100 bytes each.
pub const DEFAULT_MAX_CLIENTS: usize = 10_000;

/// Longest client key kept. Keys come from request headers (`X-Forwarded-For`), which a
/// client controls; a cap keeps one request from storing an arbitrarily large string.
const MAX_KEY_LEN: usize = 64;

/// At most `per_minute` requests per client per minute on average, in bursts of up to
/// `per_minute`: what a client that has been quiet for a minute may do at once.
pub struct ClientLimiter<C: Clock + Clone = DefaultClock> {
    what: &'static str,
    quota: Quota,
    /// Replaced by a fresh one when a flood leaves nothing to prune (the write lock is taken
    /// only then).
    limiter: RwLock<Keyed<C>>,
    clock: C,
    max_clients: usize,
}

type Keyed<C> =
    RateLimiter<String, DefaultKeyedStateStore<String>, C, NoOpMiddleware<<C as Clock>::Instant>>;

impl ClientLimiter {
    /// `per_minute` requests per client per minute for `what` (named in the log when the
    /// limiter has to forget its clients); 0 is treated as 1.
    pub fn per_minute(what: &'static str, per_minute: u32) -> Self {
        Self::with_clock(
            what,
            per_minute,
            DEFAULT_MAX_CLIENTS,
            DefaultClock::default(),
        )
    }
}

impl<C: Clock + Clone> ClientLimiter<C> {
    /// A limiter on `clock` that tracks at most `max_clients` (at least 2).
    pub fn with_clock(what: &'static str, per_minute: u32, max_clients: usize, clock: C) -> Self {
        let per_minute = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_minute(per_minute);
        Self {
            what,
            quota,
            limiter: RwLock::new(Self::fresh(quota, &clock)),
            clock,
            max_clients: max_clients.max(2),
        }
    }

    fn fresh(quota: Quota, clock: &C) -> Keyed<C> {
        RateLimiter::new(quota, DefaultKeyedStateStore::default(), clock.clone())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Keyed<C>> {
        self.limiter.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts one request of `client` (a key from [`client_key`]): `Ok`, or
    /// [`ApiError::RateLimited`] with the seconds after which it would be allowed.
    pub fn check(&self, client: &str) -> Result<(), ApiError> {
        let key: String = client.chars().take(MAX_KEY_LEN).collect();
        if self.read().len() >= self.max_clients {
            self.prune();
        }
        self.read().check_key(&key).map_err(|not_until| {
            ApiError::RateLimited(retry_after_secs(not_until.wait_time_from(self.clock.now())))
        })
    }

    /// Clients tracked now.
    pub fn tracked(&self) -> usize {
        self.read().len()
    }

    /// Drops clients whose budget is full again; if that leaves more than half the cap (a
    /// flood of new addresses), forgets them all. Either way the next prune is at least
    /// `max_clients / 2` new clients away, so pruning costs O(1) per request on average.
    fn prune(&self) {
        let mut limiter = self.limiter.write().unwrap_or_else(PoisonError::into_inner);
        if limiter.len() < self.max_clients {
            return; // another request pruned it meanwhile
        }
        limiter.retain_recent();
        if limiter.len() > self.max_clients / 2 {
            tracing::warn!(
                limit = self.what,
                clients = limiter.len(),
                "rate limiter full of active clients; forgetting them all"
            );
            *limiter = Self::fresh(self.quota, &self.clock);
        } else {
            limiter.shrink_to_fit();
        }
    }
}

/// Seconds to put in a `Retry-After` header: `retry_after` rounded up, at least 1, so a
/// client that waits that long is not refused again for the same request.
pub fn retry_after_secs(retry_after: Duration) -> u64 {
    let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
    secs.max(1)
}

/// The client's address as far as it can be trusted. With `trusted_hops` = 0 (the default)
/// it is the peer address: a client sending `X-Forwarded-For` cannot pick its own key. Behind
/// N proxies that append to `X-Forwarded-For` (Cloud Run, Fly: 1), it is the entry the
/// outermost trusted proxy appended — the N-th from the end — since anything before it is
/// whatever the client sent (`server.trusted_proxy_hops`).
pub fn client_address(req: &actix_web::HttpRequest, trusted_hops: usize) -> Option<String> {
    let peer = req.peer_addr().map(|a| a.ip().to_string());
    if trusted_hops == 0 {
        return peer;
    }
    let forwarded: Vec<String> = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|e| e.trim().to_owned())
        .filter(|e| !e.is_empty())
        .collect();
    forwarded
        .len()
        .checked_sub(trusted_hops)
        .and_then(|i| forwarded.get(i).cloned())
        .or(peer)
}

/// The limiter key for a client address as actix's `ConnectionInfo::realip_remote_addr`
/// gives it (an IP, maybe with a port or in brackets, or an obfuscated `Forwarded` token).
/// IPv4 addresses count one by one; IPv6 ones by their /64, because one host usually holds a
/// whole /64 and could otherwise take a fresh address for every request.
pub fn client_key(addr: Option<&str>) -> String {
    let Some(raw) = addr.map(str::trim).filter(|a| !a.is_empty()) else {
        return "unknown".to_owned();
    };
    let ip = raw
        .parse::<IpAddr>()
        .ok()
        .or_else(|| raw.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            raw.strip_prefix('[')
                .and_then(|r| r.split(']').next())
                .and_then(|r| r.parse::<IpAddr>().ok())
        });
    match ip.map(|ip| ip.to_canonical()) {
        Some(IpAddr::V4(v4)) => v4.to_string(),
        Some(IpAddr::V6(v6)) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        None => raw.chars().take(MAX_KEY_LEN).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    const SECOND: Duration = Duration::from_secs(1);

    fn limiter(
        per_minute: u32,
        max_clients: usize,
    ) -> (ClientLimiter<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        (
            ClientLimiter::with_clock("test", per_minute, max_clients, clock.clone()),
            clock,
        )
    }

    fn retry_after(result: Result<(), ApiError>) -> Option<u64> {
        match result {
            Ok(()) => None,
            Err(ApiError::RateLimited(secs)) => Some(secs),
            Err(other) => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn a_burst_of_the_limit_then_one_more_per_interval() {
        let (limiter, clock) = limiter(6, 100);
        for _ in 0..6 {
            assert_eq!(retry_after(limiter.check("a")), None);
        }
        // One request every 10 s after the burst: the next in 10 s.
        assert_eq!(retry_after(limiter.check("a")), Some(10));
        assert_eq!(
            retry_after(limiter.check("b")),
            None,
            "another client is not limited"
        );
        clock.advance(4 * SECOND);
        assert_eq!(retry_after(limiter.check("a")), Some(6));
        clock.advance(6 * SECOND);
        assert_eq!(retry_after(limiter.check("a")), None);
        assert_eq!(retry_after(limiter.check("a")), Some(10));
    }

    #[test]
    fn refused_requests_cost_nothing() {
        let (limiter, clock) = limiter(1, 100);
        assert_eq!(retry_after(limiter.check("a")), None);
        for _ in 0..50 {
            assert!(retry_after(limiter.check("a")).is_some());
        }
        clock.advance(60 * SECOND);
        assert_eq!(retry_after(limiter.check("a")), None);
    }

    #[test]
    fn memory_is_bounded_by_max_clients() {
        let (limiter, clock) = limiter(10, 100);
        for i in 0..10_000 {
            let _ = limiter.check(&format!("client-{i}"));
            assert!(limiter.tracked() <= 100, "{} tracked", limiter.tracked());
            if i % 37 == 0 {
                clock.advance(SECOND);
            }
        }
    }

    #[test]
    fn clients_whose_budget_is_full_again_are_pruned_first() {
        let (limiter, clock) = limiter(60, 10);
        // Nine clients used a little of their budget, a minute ago: prunable.
        for i in 0..9 {
            limiter.check(&format!("old-{i}")).unwrap();
        }
        clock.advance(60 * SECOND);
        // One client that is over its limit now stays limited through the prune.
        for _ in 0..60 {
            limiter.check("busy").unwrap();
        }
        assert!(retry_after(limiter.check("busy")).is_some());
        limiter.check("new").unwrap();
        assert!(limiter.tracked() <= 3, "{} tracked", limiter.tracked());
        assert!(
            retry_after(limiter.check("busy")).is_some(),
            "the pruning kept the busy client"
        );
    }

    #[test]
    fn long_keys_are_cut() {
        let (limiter, _) = limiter(1, 100);
        limiter.check(&"x".repeat(10_000)).unwrap();
        assert!(retry_after(limiter.check(&"x".repeat(MAX_KEY_LEN))).is_some());
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::from_secs(40)), 40);
        assert_eq!(retry_after_secs(Duration::from_millis(40_001)), 41);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }

    #[test]
    fn client_keys_are_addresses_without_ports() {
        assert_eq!(client_key(Some("203.0.113.7")), "203.0.113.7");
        assert_eq!(client_key(Some(" 203.0.113.7:5555 ")), "203.0.113.7");
        assert_eq!(client_key(Some("::ffff:203.0.113.7")), "203.0.113.7");
        assert_eq!(
            client_key(Some("2001:db8:1:2:3:4:5:6")),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            client_key(Some("[2001:db8:1:2::9]:443")),
            "2001:db8:1:2::/64"
        );
        assert_eq!(client_key(Some("[2001:db8:1:2::9]")), "2001:db8:1:2::/64");
        assert_eq!(client_key(Some("_hidden")), "_hidden");
        assert_eq!(client_key(Some(&"z".repeat(500))).len(), MAX_KEY_LEN);
        assert_eq!(client_key(None), "unknown");
        assert_eq!(client_key(Some("  ")), "unknown");
    }
}
