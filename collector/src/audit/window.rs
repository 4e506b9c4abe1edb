//! A window of `published` time, and the windows the background audit chooses from.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// Okta keeps the System Log for 90 days; a window is audited only while all of it is inside,
/// with a day to spare (an audit of a long window takes a while).
pub const AUDITABLE_AGE: chrono::Duration = chrono::Duration::days(89);

/// `from <= published < to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Window {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

impl Window {
    pub fn new(from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Window, String> {
        if to <= from {
            return Err(format!("the window {from} – {to} is empty"));
        }
        Ok(Window { from, to })
    }

    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        t >= self.from && t < self.to
    }

    /// The two halves (for a query whose answer was too large); `None` below one second.
    pub fn halves(&self) -> Option<(Window, Window)> {
        let len = self.to - self.from;
        if len < chrono::Duration::seconds(2) {
            return None;
        }
        let mid = self.from + len / 2;
        Some((
            Window {
                from: self.from,
                to: mid,
            },
            Window {
                from: mid,
                to: self.to,
            },
        ))
    }

    /// `20261204T100000Z-20261204T110000Z`: sorts by start, safe in a blob name.
    pub fn key(&self) -> String {
        format!(
            "{}-{}",
            self.from.format("%Y%m%dT%H%M%S%.3fZ"),
            self.to.format("%Y%m%dT%H%M%S%.3fZ")
        )
    }

    pub fn describe(&self) -> String {
        format!(
            "{} – {}",
            self.from.to_rfc3339_opts(SecondsFormat::Secs, true),
            self.to.to_rfc3339_opts(SecondsFormat::Secs, true)
        )
    }
}

/// Windows of `len` aligned on multiples of `len` since the Unix epoch (so a window has the
/// same bounds in every audit and its record is found again).
pub fn aligned(t: DateTime<Utc>, len: Duration) -> Window {
    let ms = len.as_millis().max(1) as i64;
    let start = t.timestamp_millis().div_euclid(ms) * ms;
    let from = DateTime::from_timestamp_millis(start).unwrap_or(t);
    Window {
        from,
        to: from + chrono::Duration::milliseconds(ms),
    }
}

/// Every aligned window that is settled (`to <= head - settle`), not older than `floor` nor
/// Okta's retention, newest first.
pub fn settled(
    head: DateTime<Utc>,
    settle: Duration,
    len: Duration,
    floor: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Vec<Window> {
    let settle = chrono::Duration::from_std(settle).unwrap_or(chrono::Duration::hours(1));
    let limit = head - settle;
    let oldest = floor.max(now - AUDITABLE_AGE);
    let mut out = Vec::new();
    let mut w = aligned(limit, len);
    if w.to > limit {
        let step = w.to - w.from;
        w = Window {
            from: w.from - step,
            to: w.from,
        };
    }
    while w.from >= oldest && out.len() < 24 * 90 * 60 {
        out.push(w);
        let step = w.to - w.from;
        w = Window {
            from: w.from - step,
            to: w.from,
        };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn settled_windows_are_aligned_newest_first_and_bounded() {
        let now = t("2026-12-04T12:30:00Z");
        let ws = settled(
            now,
            Duration::from_secs(3600),
            Duration::from_secs(3600),
            t("2026-12-04T08:00:00Z"),
            now,
        );
        assert_eq!(ws.first().unwrap().from, t("2026-12-04T10:00:00Z"));
        assert_eq!(ws.first().unwrap().to, t("2026-12-04T11:00:00Z"));
        assert_eq!(ws.last().unwrap().from, t("2026-12-04T08:00:00Z"));
        assert_eq!(ws.len(), 3);
        let w = ws[0];
        let (a, b) = w.halves().unwrap();
        assert_eq!((a.from, a.to, b.to), (w.from, b.from, w.to));
        assert_eq!(w.key(), "20261204T100000.000Z-20261204T110000.000Z");
    }
}
