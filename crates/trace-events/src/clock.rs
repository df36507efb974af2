//! Where a tracer's time comes from: a monotonic clock for durations, plus one wall-clock
//! reading at the start for timestamps.
//!
//! Every event timestamp is the start time plus the monotonic elapsed time, so timestamps never
//! go backwards and always agree with `elapsed_us` and `duration_us`. Tests swap in a
//! [`TickClock`] to get byte-identical golden files.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// A source of time for an [`InferenceTracer`](super::InferenceTracer).
pub trait Clock: Send + Sync {
    /// Wall-clock time at which the clock started.
    fn start(&self) -> SystemTime;
    /// Monotonic time since the start.
    fn elapsed(&self) -> Duration;
}

/// The real clock: [`Instant`] for elapsed time, [`SystemTime::now`] once for the start.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    wall: SystemTime,
    origin: Instant,
}

impl SystemClock {
    /// A clock starting now.
    pub fn new() -> Self {
        Self {
            wall: SystemTime::now(),
            origin: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn start(&self) -> SystemTime {
        self.wall
    }

    fn elapsed(&self) -> Duration {
        self.origin.elapsed()
    }
}

/// A deterministic clock for tests and golden files: starts at a fixed time and advances by a
/// fixed tick every time it is read.
#[derive(Debug)]
pub struct TickClock {
    start: SystemTime,
    tick_us: u64,
    reads: AtomicU64,
}

impl TickClock {
    /// Starts at `start`; the n-th reading (from 0) is `n * tick_us` microseconds.
    pub fn new(start: SystemTime, tick_us: u64) -> Self {
        Self {
            start,
            tick_us,
            reads: AtomicU64::new(0),
        }
    }

    /// Starts at 2024-01-01T00:00:00Z and ticks 10 µs per reading.
    pub fn fixed() -> Self {
        Self::new(
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_704_067_200),
            10,
        )
    }
}

impl Clock for TickClock {
    fn start(&self) -> SystemTime {
        self.start
    }

    fn elapsed(&self) -> Duration {
        let n = self.reads.fetch_add(1, Ordering::Relaxed);
        Duration::from_micros(n * self.tick_us)
    }
}

/// RFC 3339 with microseconds, UTC: `2024-01-01T00:00:00.000010Z`.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_micros(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_clock_is_deterministic() {
        let c = TickClock::fixed();
        assert_eq!(c.elapsed(), Duration::ZERO);
        assert_eq!(c.elapsed(), Duration::from_micros(10));
        assert_eq!(
            rfc3339(c.start() + c.elapsed()),
            "2024-01-01T00:00:00.000020Z"
        );
    }

    #[test]
    fn system_clock_is_monotonic() {
        let c = SystemClock::new();
        let a = c.elapsed();
        assert!(c.elapsed() >= a);
    }
}
