//! Wall-clock time that tests can move forward: the auto-register timeout is minutes
//! long, and waiting for it in a test is not an option.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset_ms: Arc<AtomicU64>,
}

impl Clock {
    pub fn now(&self) -> SystemTime {
        SystemTime::now() + Duration::from_millis(self.offset_ms.load(Ordering::Relaxed))
    }

    /// Moves this clock (and every clone of it) forward.
    pub fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.offset_ms.fetch_add(ms, Ordering::Relaxed);
    }
}

/// `2026-12-01 00:12:03 UTC`: how the status pages show a moment.
pub fn utc(at: SystemTime) -> String {
    let t = time::OffsetDateTime::from(at);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// RFC 3339, for machines (the post-mortem log).
pub fn rfc3339(at: SystemTime) -> String {
    time::OffsetDateTime::from(at).format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// `0.8 s`, `42 s`, `3 min 5 s`, `2 h 7 min`: a duration as the pages show it.
pub fn span(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..10 => format!("{:.1} s", d.as_secs_f64()),
        10..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_and_spans_read_the_way_the_pages_show_them() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_083_923);
        assert_eq!(utc(at), "2026-12-01 00:12:03 UTC");
        assert_eq!(rfc3339(at), "2026-12-01T00:12:03Z");
        let cases = [(800, "0.8 s"), (42_000, "42 s"), (185_000, "3 min 5 s"), (7_620_000, "2 h 7 min")];
        for (ms, text) in cases {
            assert_eq!(span(Duration::from_millis(ms)), text);
        }
    }
}
