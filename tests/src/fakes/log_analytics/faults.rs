//! Injected failures: the ways Azure Monitor lets a client down that a shipper must survive.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// A failure to inject into the next requests (both APIs).
#[derive(Debug, Clone, PartialEq)]
pub enum LaFault {
    /// The next `count` requests get `status` (with `Retry-After` when given) before any
    /// validation, as a throttling gateway or a failing backend answers.
    Status {
        status: u16,
        count: usize,
        retry_after_secs: Option<u64>,
    },
    /// Every request gets `status` for `duration` from now (429/503 carry a `Retry-After` of
    /// the seconds left). Replaces a window under way; `Duration::ZERO` ends it.
    StatusFor { status: u16, duration: Duration },
    /// Every request gets `status` with the same `Retry-After: retry_after_secs` for
    /// `duration` from now: a throttling storm that outlasts the wait it asks for, so a client
    /// that honours the header comes back several times before it ends. Replaces a window
    /// under way.
    StormFor {
        status: u16,
        duration: Duration,
        retry_after_secs: u64,
    },
    /// The next `count` requests that would succeed are accepted (rows stored and counted)
    /// but the connection is closed before any response: the client sees a connection
    /// error for rows that did land, the source of the one unavoidable duplicate.
    AcceptThenDrop { count: usize },
    /// The service is unreachable for `duration`: the listener is closed (connection
    /// refused) and requests on already-open connections have their connection closed.
    /// Replaces an outage under way; `Duration::ZERO` ends it.
    Down { duration: Duration },
    /// Every request whose (decompressed) body contains `needle` gets `status`, for as long
    /// as the fake runs, while other requests are served: one page's data that a backend keeps
    /// failing on. Checked after the body is read, before anything is stored.
    StatusWhenBodyContains { needle: String, status: u16 },
    /// Requests arriving within `duration` from now get no answer until it is over, then a
    /// 503 (nothing stored): a backend that hangs. `Duration::ZERO` ends it.
    Stall { duration: Duration },
    /// From now on the Logs Ingestion API refuses (413) a body whose decompressed size is
    /// above `bytes`: a service limit stricter than the one the shipper packs for, so that a
    /// single big row is refused. `usize::MAX` lifts it.
    RefuseLargerThan { bytes: usize },
}

/// What a request must suffer before it is validated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Before {
    /// Close the connection without a response.
    Drop,
    /// Answer `status` with an optional `Retry-After`.
    Status {
        status: u16,
        retry_after_secs: Option<u64>,
    },
    /// Answer nothing until then, then a 503.
    StallUntil(Instant),
}

/// A queued fault with the requests it still applies to.
#[derive(Debug)]
enum Queued {
    Status {
        status: u16,
        left: usize,
        retry_after_secs: Option<u64>,
    },
    AcceptThenDrop {
        left: usize,
    },
}

/// Random failures at a fixed rate, reproducible from a seed.
#[derive(Debug)]
struct Chaos {
    rate: f64,
    statuses: Vec<u16>,
    rng: StdRng,
}

/// The fault schedule of one fake.
#[derive(Debug, Default)]
pub struct FaultState {
    queue: VecDeque<Queued>,
    /// Status, end of the window, and a fixed `Retry-After` (else the seconds left).
    status_until: Option<(u16, Instant, Option<u64>)>,
    down_until: Option<Instant>,
    chaos: Option<Chaos>,
    /// [`LaFault::StatusWhenBodyContains`] rules.
    content: Vec<(String, u16)>,
    stall_until: Option<Instant>,
    body_limit: Option<usize>,
}

/// `Retry-After` for a status the service sends it with.
fn default_retry_after(status: u16, secs: u64) -> Option<u64> {
    matches!(status, 429 | 503).then_some(secs)
}

impl FaultState {
    pub fn inject(&mut self, fault: LaFault) {
        match fault {
            LaFault::Status {
                status,
                count,
                retry_after_secs,
            } => self.queue.push_back(Queued::Status {
                status,
                left: count,
                retry_after_secs,
            }),
            LaFault::StatusFor { status, duration } => {
                self.status_until = Some((status, Instant::now() + duration, None));
            }
            LaFault::StormFor {
                status,
                duration,
                retry_after_secs,
            } => {
                self.status_until =
                    Some((status, Instant::now() + duration, Some(retry_after_secs)));
            }
            LaFault::AcceptThenDrop { count } => {
                self.queue.push_back(Queued::AcceptThenDrop { left: count });
            }
            LaFault::Down { duration } => self.down_until = Some(Instant::now() + duration),
            LaFault::StatusWhenBodyContains { needle, status } => {
                self.content.push((needle, status))
            }
            LaFault::Stall { duration } => self.stall_until = Some(Instant::now() + duration),
            LaFault::RefuseLargerThan { bytes } => {
                self.body_limit = (bytes < usize::MAX).then_some(bytes)
            }
        }
    }

    /// The injected limit on a decompressed body, if any.
    pub fn body_limit(&self) -> Option<usize> {
        self.body_limit
    }

    pub fn set_rate(&mut self, rate: f64, statuses: Vec<u16>, seed: u64) {
        self.chaos = (rate > 0.0 && !statuses.is_empty()).then(|| Chaos {
            rate: rate.min(1.0),
            statuses,
            rng: StdRng::seed_from_u64(seed),
        });
    }

    /// When the current outage ends, if one is under way.
    pub fn down_until(&mut self) -> Option<Instant> {
        match self.down_until {
            Some(t) if t > Instant::now() => Some(t),
            _ => {
                self.down_until = None;
                None
            }
        }
    }

    /// The fault a request meets on arrival, if any (consumes one queued `Status`).
    pub fn before(&mut self) -> Option<Before> {
        if self.down_until().is_some() {
            return Some(Before::Drop);
        }
        let now = Instant::now();
        if let Some(until) = self.stall_until.filter(|u| *u > now) {
            return Some(Before::StallUntil(until));
        }
        if let Some((status, until, fixed)) = self.status_until {
            if until > now {
                let left = until.saturating_duration_since(now);
                let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
                return Some(Before::Status {
                    status,
                    retry_after_secs: fixed.or(default_retry_after(status, secs.max(1))),
                });
            }
            self.status_until = None;
        }
        while matches!(
            self.queue.front(),
            Some(Queued::Status { left: 0, .. } | Queued::AcceptThenDrop { left: 0 })
        ) {
            self.queue.pop_front();
        }
        if let Some(Queued::Status {
            status,
            left,
            retry_after_secs,
        }) = self.queue.front_mut()
        {
            *left -= 1;
            let answer = Before::Status {
                status: *status,
                retry_after_secs: *retry_after_secs,
            };
            if *left == 0 {
                self.queue.pop_front();
            }
            return Some(answer);
        }
        if let Some(chaos) = &mut self.chaos {
            if chaos.rng.random::<f64>() < chaos.rate {
                let i = chaos.rng.random_range(0..chaos.statuses.len());
                let status = chaos.statuses[i];
                return Some(Before::Status {
                    status,
                    retry_after_secs: default_retry_after(status, 1),
                });
            }
        }
        None
    }

    /// The status a request with this (decompressed) body must get, if a
    /// [`LaFault::StatusWhenBodyContains`] rule matches it.
    pub fn for_body(&self, body: &[u8]) -> Option<u16> {
        self.content.iter().find_map(|(needle, status)| {
            body.windows(needle.len().max(1))
                .any(|w| w == needle.as_bytes())
                .then_some(*status)
        })
    }

    /// Whether a request that is about to succeed must be dropped after its rows are stored
    /// (consumes one queued `AcceptThenDrop`).
    pub fn take_accept_then_drop(&mut self) -> bool {
        if let Some(Queued::AcceptThenDrop { left }) = self.queue.front_mut() {
            if *left > 0 {
                *left -= 1;
                if *left == 0 {
                    self.queue.pop_front();
                }
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queued_faults_apply_in_order_and_run_out() {
        let mut f = FaultState::default();
        f.inject(LaFault::Status {
            status: 500,
            count: 2,
            retry_after_secs: None,
        });
        f.inject(LaFault::AcceptThenDrop { count: 1 });
        let s500 = Some(Before::Status {
            status: 500,
            retry_after_secs: None,
        });
        assert!(!f.take_accept_then_drop());
        assert_eq!(f.before(), s500);
        assert_eq!(f.before(), s500);
        assert_eq!(f.before(), None);
        assert!(f.take_accept_then_drop());
        assert!(!f.take_accept_then_drop());
        assert_eq!(f.before(), None);
    }

    #[test]
    fn windows_and_rates() {
        let mut f = FaultState::default();
        f.inject(LaFault::StatusFor {
            status: 429,
            duration: Duration::from_secs(30),
        });
        assert!(matches!(
            f.before(),
            Some(Before::Status {
                status: 429,
                retry_after_secs: Some(s)
            }) if (1..=30).contains(&s)
        ));
        f.inject(LaFault::Down {
            duration: Duration::from_secs(30),
        });
        assert_eq!(f.before(), Some(Before::Drop));

        let mut storm = FaultState::default();
        storm.inject(LaFault::StormFor {
            status: 429,
            duration: Duration::from_secs(30),
            retry_after_secs: 4,
        });
        for _ in 0..3 {
            assert_eq!(
                storm.before(),
                Some(Before::Status {
                    status: 429,
                    retry_after_secs: Some(4)
                })
            );
        }

        let mut r = FaultState::default();
        r.set_rate(0.5, vec![429, 500], 7);
        let hits = (0..1000).filter(|_| r.before().is_some()).count();
        assert!((350..650).contains(&hits), "{hits}");
        r.set_rate(0.0, vec![429], 7);
        assert_eq!(r.before(), None);
    }

    #[test]
    fn content_rules_match_bodies_only() {
        let mut f = FaultState::default();
        f.inject(LaFault::StatusWhenBodyContains {
            needle: "uuid-7".into(),
            status: 500,
        });
        assert_eq!(f.before(), None);
        assert_eq!(f.for_body(br#"[{"uuid_g":"uuid-7"}]"#), Some(500));
        assert_eq!(f.for_body(br#"[{"uuid_g":"uuid-8"}]"#), None);
    }
}
