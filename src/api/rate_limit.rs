//! A small in-memory, per-client rate limiter: a fixed window per client key (an IP address),
//! with a cap on how many clients it tracks so its memory stays bounded whatever the traffic.
//!
//! It is per process: with several API instances each one counts on its own, so the effective
//! limit is the configured one times the instance count. That is fine for its purpose (keeping
//! one client from minting tokens in a tight loop), and needs no shared store.
//!
//! Config keys read (by the caller that builds it): `livekit.join_per_minute`.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Clients tracked by default: enough for a busy station, ~100 bytes each.
pub const DEFAULT_MAX_CLIENTS: usize = 10_000;

/// Longest client key kept. Keys come from request headers (`X-Forwarded-For`), which a
/// client controls; a cap keeps one request from storing an arbitrarily large string.
const MAX_KEY_LEN: usize = 64;

/// What [`RateLimiter::check`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// Over the limit; the client's window reopens after `retry_after`.
    Limited {
        retry_after: Duration,
    },
}

/// One client's current window.
#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    count: u32,
}

#[derive(Debug)]
struct Clients {
    windows: HashMap<String, Window>,
    /// The tracked clients in the order their windows started, oldest first: one entry per
    /// entry of `windows`, so expiring and evicting cost O(1) each instead of a full scan
    /// (a scan per request would let a flood of new addresses burn CPU under the lock).
    order: VecDeque<(Instant, String)>,
    /// Latest time seen; keeps `order` sorted when two requests race for the lock.
    latest: Instant,
}

/// At most `limit` requests per client per `window`, counting from the client's first request
/// of the window. Tracks at most `max_clients` clients: windows that have ended are dropped
/// as time passes, and when it is full of live windows a new client takes the place of the
/// one whose window started longest ago (the one closest to being forgiven anyway), so a
/// flood of new addresses can never lock out clients it has not seen.
#[derive(Debug)]
pub struct RateLimiter {
    limit: u32,
    window: Duration,
    max_clients: usize,
    clients: Mutex<Clients>,
}

impl RateLimiter {
    /// `limit` of 0 is treated as 1 and `max_clients` of 0 as 1: a limiter that refuses
    /// everyone, or tracks nobody, is never what was meant.
    pub fn new(limit: u32, window: Duration, max_clients: usize) -> Self {
        Self {
            limit: limit.max(1),
            window,
            max_clients: max_clients.max(1),
            clients: Mutex::new(Clients {
                windows: HashMap::new(),
                order: VecDeque::new(),
                latest: Instant::now(),
            }),
        }
    }

    /// `per_minute` requests per client per minute, tracking up to [`DEFAULT_MAX_CLIENTS`].
    pub fn per_minute(per_minute: u32) -> Self {
        Self::new(per_minute, Duration::from_secs(60), DEFAULT_MAX_CLIENTS)
    }

    /// Counts one request from `client` (see [`client_key`]) and says whether it may proceed.
    pub fn check(&self, client: &str) -> Decision {
        self.check_at(client, Instant::now())
    }

    /// Clients currently tracked.
    pub fn tracked(&self) -> usize {
        self.lock().windows.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Clients> {
        // Every update below leaves the map and the queue consistent before anything that
        // could panic, so a lock poisoned by a panic elsewhere is still safe to use.
        self.clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn check_at(&self, client: &str, now: Instant) -> Decision {
        let mut guard = self.lock();
        let clients = &mut *guard;
        let now = now.max(clients.latest);
        clients.latest = now;
        // Drop the windows that have ended, oldest first.
        while let Some((started, _)) = clients.order.front()
            && now.duration_since(*started) >= self.window
        {
            if let Some((_, key)) = clients.order.pop_front() {
                clients.windows.remove(&key);
            }
        }
        if let Some(w) = clients.windows.get_mut(client) {
            if w.count < self.limit {
                w.count += 1;
                return Decision::Allowed;
            }
            return Decision::Limited {
                retry_after: self.window.saturating_sub(now.duration_since(w.started)),
            };
        }
        while clients.windows.len() >= self.max_clients {
            match clients.order.pop_front() {
                Some((_, oldest)) => {
                    clients.windows.remove(&oldest);
                }
                None => break,
            }
        }
        clients.windows.insert(
            client.to_owned(),
            Window {
                started: now,
                count: 1,
            },
        );
        clients.order.push_back((now, client.to_owned()));
        Decision::Allowed
    }
}

/// Seconds to put in a `Retry-After` header: `retry_after` rounded up, at least 1, so a
/// client that waits that long is never refused again by the same window.
pub fn retry_after_secs(retry_after: Duration) -> u64 {
    let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
    secs.max(1)
}

/// The limiter key for a client address as actix's `ConnectionInfo::realip_remote_addr`
/// gives it (an IP, maybe with a port or in brackets, or an obfuscated `Forwarded` token).
/// IPv4 addresses count one by one; IPv6 ones by their /64, because one host usually holds a
/// whole /64 and could otherwise take a fresh address for every request.
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

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn allows_the_limit_then_refuses_until_the_window_ends() {
        let limiter = RateLimiter::new(3, MINUTE, 100);
        let t0 = Instant::now();
        for i in 0..3 {
            assert_eq!(
                limiter.check_at("a", t0 + Duration::from_secs(i)),
                Decision::Allowed
            );
        }
        assert_eq!(
            limiter.check_at("a", t0 + Duration::from_secs(20)),
            Decision::Limited {
                retry_after: Duration::from_secs(40)
            }
        );
        // Another client has its own budget.
        assert_eq!(
            limiter.check_at("b", t0 + Duration::from_secs(20)),
            Decision::Allowed
        );
        // Just before the window ends: still refused; at its end: a fresh window.
        assert!(matches!(
            limiter.check_at("a", t0 + MINUTE - Duration::from_millis(1)),
            Decision::Limited { .. }
        ));
        assert_eq!(limiter.check_at("a", t0 + MINUTE), Decision::Allowed);
        assert_eq!(
            limiter.check_at("a", t0 + MINUTE + Duration::from_secs(1)),
            Decision::Allowed
        );
    }

    #[test]
    fn refused_requests_do_not_extend_the_window() {
        let limiter = RateLimiter::new(1, MINUTE, 100);
        let t0 = Instant::now();
        assert_eq!(limiter.check_at("a", t0), Decision::Allowed);
        for s in [1, 30, 59] {
            assert!(matches!(
                limiter.check_at("a", t0 + Duration::from_secs(s)),
                Decision::Limited { .. }
            ));
        }
        assert_eq!(limiter.check_at("a", t0 + MINUTE), Decision::Allowed);
    }

    #[test]
    fn memory_is_bounded_by_max_clients() {
        let limiter = RateLimiter::new(1, MINUTE, 3);
        let t0 = Instant::now();
        for (i, c) in ["a", "b", "c"].into_iter().enumerate() {
            limiter.check_at(c, t0 + Duration::from_secs(i as u64));
        }
        assert_eq!(limiter.tracked(), 3);
        // Full of live windows: the newcomer is let in and replaces the oldest ("a").
        assert_eq!(
            limiter.check_at("d", t0 + Duration::from_secs(10)),
            Decision::Allowed
        );
        assert_eq!(limiter.tracked(), 3);
        assert!(matches!(
            limiter.check_at("b", t0 + Duration::from_secs(11)),
            Decision::Limited { .. }
        ));
        assert_eq!(
            limiter.check_at("a", t0 + Duration::from_secs(12)),
            Decision::Allowed,
            "the evicted client starts afresh"
        );
        assert_eq!(limiter.tracked(), 3);
        for i in 0..1000 {
            limiter.check_at(&format!("x{i}"), t0 + Duration::from_secs(13));
        }
        assert_eq!(limiter.tracked(), 3);
    }

    #[test]
    fn stale_windows_are_swept_out() {
        let limiter = RateLimiter::new(5, MINUTE, 100);
        let t0 = Instant::now();
        for i in 0..50 {
            limiter.check_at(&format!("c{i}"), t0);
        }
        assert_eq!(limiter.tracked(), 50);
        limiter.check_at("late", t0 + 2 * MINUTE);
        assert_eq!(limiter.tracked(), 1);
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
