//! The end of a function invocation, to stop starting work that cannot finish in time.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline(Instant);

impl Deadline {
    /// From milliseconds since the Unix epoch, as the Lambda context carries it. A value that
    /// is no wall-clock instant at all (0 in a context built by hand, or the constant some
    /// Runtime API emulators send) means `default_budget` from now.
    pub fn from_epoch_millis(deadline_ms: u64, default_budget: Duration) -> Self {
        // NOTE: any real deadline is after 2001-09-09 (10^12 ms).
        if deadline_ms < 1_000_000_000_000 {
            return Self::after(default_budget);
        }
        let left = (UNIX_EPOCH + Duration::from_millis(deadline_ms))
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        Self::after(left)
    }

    pub fn after(budget: Duration) -> Self {
        Self(Instant::now() + budget)
    }

    pub fn remaining(&self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch_millis(t: SystemTime) -> u64 {
        t.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
    }

    #[test]
    fn remaining_time_counts_down_to_zero() {
        let soon = Deadline::from_epoch_millis(
            epoch_millis(SystemTime::now() + Duration::from_secs(30)),
            Duration::ZERO,
        );
        assert!(soon.remaining() > Duration::from_secs(25));
        assert!(soon.remaining() <= Duration::from_secs(30));
        let past = Deadline::from_epoch_millis(
            epoch_millis(SystemTime::now() - Duration::from_secs(5)),
            Duration::from_secs(60),
        );
        assert_eq!(past.remaining(), Duration::ZERO);
        for unknown in [0, 600_000] {
            let d = Deadline::from_epoch_millis(unknown, Duration::from_secs(60));
            assert!(d.remaining() > Duration::from_secs(55), "{unknown}");
        }
    }
}
