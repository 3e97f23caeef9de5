//! The server's clock, passed in ([`rmm_core::io::Clock`]): handlers, the
//! services and the hub read time only from [`App::clock`](crate::App).
//!
//! [`ServerClock`] reads the wall clock once, when it is made, and then
//! counts tokio's monotonic time from there. Two consequences, both
//! wanted: timestamps the server writes never go backwards when the
//! system clock is stepped while it runs, and a test that pauses tokio's
//! clock (`tokio::time::pause`) drives the server's wall time too, so
//! expiries and timeouts are tested by advancing time, never by sleeping.

use std::time::{Duration, Instant};

pub use rmm_core::io::Clock;

/// Wall time at construction plus tokio's monotonic time since.
#[derive(Debug, Clone, Copy)]
pub struct ServerClock {
    base_unix_ms: u64,
    base: tokio::time::Instant,
}

impl ServerClock {
    /// A clock starting at the system's wall time now.
    #[allow(clippy::disallowed_methods)] // the one place the server reads the wall clock
    pub fn new() -> Self {
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Self::starting_at(unix_ms)
    }

    /// A clock whose wall time is `unix_ms` now (tests pick their epoch).
    pub fn starting_at(unix_ms: u64) -> Self {
        ServerClock {
            base_unix_ms: unix_ms,
            base: tokio::time::Instant::now(),
        }
    }
}

impl Default for ServerClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ServerClock {
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

    fn unix_ms(&self) -> u64 {
        let elapsed = self.base.elapsed();
        self.base_unix_ms
            .saturating_add(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
    }
}

/// Unix milliseconds of `clock` as the store keeps them (`i64`).
pub fn unix_ms_i64(clock: &dyn Clock) -> i64 {
    i64::try_from(clock.unix_ms()).unwrap_or(i64::MAX)
}

/// Milliseconds of a duration as the store counts them (saturating).
pub fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn wall_time_follows_tokio_time() {
        let clock = ServerClock::starting_at(1_000);
        assert_eq!(clock.unix_ms(), 1_000);
        tokio::time::advance(Duration::from_millis(2_500)).await;
        assert_eq!(clock.unix_ms(), 3_500);
        assert_eq!(unix_ms_i64(&clock), 3_500);
    }

    #[test]
    fn the_real_clock_is_after_2020() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        let clock = rt.block_on(async { ServerClock::new() });
        assert!(clock.unix_ms() > 1_577_836_800_000);
    }
}
