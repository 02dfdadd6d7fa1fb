//! A circuit breaker per host: when at least half of the last ten calls to a host failed, calls
//! to it are refused for 30 seconds; the first call after that decides whether it stays closed.
//!
//! Hand-written: the maintained breaker crates either wrap the call themselves (the webhook
//! classifies outcomes after the call) or keep one breaker, not one per host.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerSettings {
    /// How many recent calls are judged.
    pub window: usize,
    /// The share of failures among them that opens the breaker.
    pub failure_ratio: f64,
    pub open_for: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            window: 10,
            failure_ratio: 0.5,
            open_for: Duration::from_secs(30),
        }
    }
}

/// Hosts remembered at most; beyond that, closed hosts are forgotten.
const MAX_HOSTS: usize = 4096;

#[derive(Debug, Default)]
struct HostState {
    /// `true` for a failed call, newest last.
    recent: VecDeque<bool>,
    open_until: Option<Instant>,
    /// Just reopened: the next outcome alone decides.
    probation: bool,
}

#[derive(Debug, Default)]
pub struct CircuitBreaker {
    settings: BreakerSettings,
    hosts: Mutex<HashMap<String, HostState>>,
}

impl CircuitBreaker {
    pub fn new(settings: BreakerSettings) -> Self {
        Self {
            settings,
            hosts: Mutex::default(),
        }
    }

    fn hosts(&self) -> std::sync::MutexGuard<'_, HashMap<String, HostState>> {
        self.hosts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether a call to `host` may go out now.
    pub fn admit(&self, host: &str, now: Instant) -> bool {
        let mut hosts = self.hosts();
        let Some(state) = hosts.get_mut(host) else {
            return true;
        };
        match state.open_until {
            Some(until) if now < until => false,
            Some(_) => {
                state.open_until = None;
                state.probation = true;
                true
            }
            None => true,
        }
    }

    /// Records the outcome of a call to `host`.
    pub fn record(&self, host: &str, failed: bool, now: Instant) {
        let mut hosts = self.hosts();
        if !hosts.contains_key(host) && hosts.len() >= MAX_HOSTS {
            hosts.retain(|_, s| s.open_until.is_some());
        }
        let state = hosts.entry(host.to_owned()).or_default();
        if std::mem::take(&mut state.probation) {
            if failed {
                self.open(state, now);
            }
            return;
        }
        state.recent.push_back(failed);
        if state.recent.len() > self.settings.window {
            state.recent.pop_front();
        }
        let failures = state.recent.iter().filter(|f| **f).count();
        if state.recent.len() == self.settings.window
            && failures as f64 >= self.settings.failure_ratio * self.settings.window as f64
        {
            self.open(state, now);
        }
    }

    fn open(&self, state: &mut HostState, now: Instant) {
        state.open_until = Some(now + self.settings.open_for);
        state.recent.clear();
        tracing::warn!(
            open_for_s = self.settings.open_for.as_secs(),
            "circuit opened for a failing webhook host"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calls(b: &CircuitBreaker, host: &str, outcomes: &[bool], now: Instant) {
        for failed in outcomes {
            assert!(b.admit(host, now), "closed while recording");
            b.record(host, *failed, now);
        }
    }

    #[test]
    fn half_of_the_last_ten_calls_failing_opens_it_for_thirty_seconds() {
        let b = CircuitBreaker::default();
        let t0 = Instant::now();
        calls(
            &b,
            "h:443",
            &[false, true, false, true, false, true, false, true, false],
            t0,
        );
        assert!(b.admit("h:443", t0), "nine calls are not a full window");
        b.record("h:443", true, t0);
        assert!(!b.admit("h:443", t0), "5 of 10 failed");
        assert!(b.admit("other:443", t0), "per host");
        assert!(!b.admit("h:443", t0 + Duration::from_secs(29)));
        assert!(b.admit("h:443", t0 + Duration::from_secs(30)));
    }

    #[test]
    fn four_failures_in_ten_keep_it_closed_and_old_calls_age_out() {
        let b = CircuitBreaker::default();
        let t0 = Instant::now();
        calls(&b, "h", &[true, true, true, true], t0);
        calls(&b, "h", &[false; 6], t0);
        assert!(b.admit("h", t0));
        // The four failures slide out as successes come in.
        calls(&b, "h", &[false; 4], t0);
        calls(&b, "h", &[true; 4], t0);
        assert!(b.admit("h", t0), "4 of the last 10");
        b.record("h", true, t0);
        assert!(!b.admit("h", t0), "5 of the last 10");
    }

    #[test]
    fn the_first_call_after_the_pause_decides() {
        let b = CircuitBreaker::default();
        let t0 = Instant::now();
        calls(&b, "h", &[true; 10], t0);
        let t1 = t0 + Duration::from_secs(30);
        assert!(b.admit("h", t1));
        b.record("h", true, t1);
        assert!(!b.admit("h", t1), "a failed trial reopens at once");
        let t2 = t1 + Duration::from_secs(30);
        assert!(b.admit("h", t2));
        b.record("h", false, t2);
        calls(&b, "h", &[true; 9], t2);
        assert!(b.admit("h", t2), "a good trial starts a fresh window");
    }
}
