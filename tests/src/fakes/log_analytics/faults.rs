//! Injected failures: the ways Azure Monitor lets a client down that a shipper must survive.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

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
    /// The next `count` requests that would succeed are accepted (rows stored and counted)
    /// but the connection is closed before any response: the client sees a connection
    /// error for rows that did land, the source of the one unavoidable duplicate.
    AcceptThenDrop { count: usize },
    /// The service is unreachable for `duration`: the listener is closed (connection
    /// refused) and requests on already-open connections have their connection closed.
    /// Replaces an outage under way; `Duration::ZERO` ends it.
    Down { duration: Duration },
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
    status_until: Option<(u16, Instant)>,
    down_until: Option<Instant>,
    chaos: Option<Chaos>,
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
                self.status_until = Some((status, Instant::now() + duration));
            }
            LaFault::AcceptThenDrop { count } => {
                self.queue.push_back(Queued::AcceptThenDrop { left: count });
            }
            LaFault::Down { duration } => self.down_until = Some(Instant::now() + duration),
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
        if let Some((status, until)) = self.status_until {
            if until > now {
                let left = until.saturating_duration_since(now);
                let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
                return Some(Before::Status {
                    status,
                    retry_after_secs: default_retry_after(status, secs.max(1)),
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

        let mut r = FaultState::default();
        r.set_rate(0.5, vec![429, 500], 7);
        let hits = (0..1000).filter(|_| r.before().is_some()).count();
        assert!((350..650).contains(&hits), "{hits}");
        r.set_rate(0.0, vec![429], 7);
        assert_eq!(r.before(), None);
    }
}
