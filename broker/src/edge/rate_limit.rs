//! The per-client-address creation rate limit: a token bucket per address (governor's keyed
//! GCRA limiter). `GET /` costs a worker process and a Lua VM, so one address may create
//! `--create-burst-per-client` sessions at once and then `--create-rate-per-client` a minute;
//! past that it gets 429 with `Retry-After`, and other addresses are not affected. IPv6
//! clients are keyed by their /64, the block one subscriber usually holds.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

pub struct CreationLimiter {
    /// `None` when the limit is off (`--create-rate-per-client 0`).
    buckets: Option<DefaultKeyedRateLimiter<IpAddr>>,
}

impl CreationLimiter {
    pub fn new(per_minute: u32, burst: u32) -> CreationLimiter {
        let buckets = NonZeroU32::new(per_minute).map(|rate| {
            let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
            RateLimiter::keyed(Quota::per_minute(rate).allow_burst(burst))
        });
        CreationLimiter { buckets }
    }

    /// Takes a token for `client`, or says how long until one is there.
    pub fn check(&self, client: IpAddr) -> Result<(), Duration> {
        let Some(buckets) = &self.buckets else {
            return Ok(());
        };
        buckets
            .check_key(&key(client))
            // The limiter's own clock: making a clock reads the CPU's identity (`cpuid`, a
            // trap to the hypervisor on a VM), which cost a refusal more than the rest of it.
            .map_err(|not_yet| not_yet.wait_time_from(buckets.clock().now()))
    }

    /// Forgets addresses whose bucket is full again (they are as good as new), so the table
    /// holds only recent creators. Called periodically.
    pub fn forget_idle(&self) {
        if let Some(buckets) = &self.buckets {
            buckets.retain_recent();
            buckets.shrink_to_fit();
        }
    }

    pub fn tracked(&self) -> usize {
        self.buckets.as_ref().map_or(0, |b| b.len())
    }
}

/// The answer past the bucket: `429` with `Retry-After` (whole seconds, at least 1), counted
/// as `luabroker_refusals{reason="create_rate"}`.
pub fn refusal(wait: Duration) -> axum::response::Response {
    use axum::http::{header, StatusCode};
    use axum::response::IntoResponse;
    crate::metrics::metrics().refused("create_rate");
    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, secs.to_string())],
        format!("too many new sessions from your address; try again in {secs} s\n"),
    )
        .into_response()
}

fn key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let mut octets = v6.octets();
            octets[8..].fill(0);
            IpAddr::from(octets)
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_burst_then_refusals_for_that_address_only() {
        let limiter = CreationLimiter::new(1, 3);
        for _ in 0..3 {
            assert!(limiter.check(ip("127.0.0.2")).is_ok());
        }
        let wait = limiter.check(ip("127.0.0.2")).unwrap_err();
        assert!(wait > Duration::from_secs(1) && wait <= Duration::from_secs(60));
        assert!(limiter.check(ip("127.0.0.3")).is_ok());
    }

    #[test]
    fn ipv6_clients_share_their_64() {
        let limiter = CreationLimiter::new(1, 1);
        assert!(limiter.check(ip("2001:db8:1:2::1")).is_ok());
        assert!(limiter.check(ip("2001:db8:1:2::ffff")).is_err());
        assert!(limiter.check(ip("2001:db8:1:3::1")).is_ok());
    }

    #[test]
    fn zero_switches_it_off() {
        let limiter = CreationLimiter::new(0, 0);
        for _ in 0..1000 {
            assert!(limiter.check(ip("127.0.0.2")).is_ok());
        }
        assert_eq!(limiter.tracked(), 0);
    }
}
