//! The server's one clock ([`Config::clock`](crate::Config::clock), also
//! [`App::clock`](crate::App::clock)): the agent connections' timers (the
//! `hello` deadline, liveness probes, send timeouts), the background loops,
//! and every timestamp and expiry the handlers and services write or check
//! (tokens, enrollment tokens, the online window, audit rows).
//!
//! Production uses [`TokioClock`]: tokio's monotonic clock (so
//! `tokio::time::pause` drives it) and the system's wall clock. A test that
//! wants to drive time through a whole server without pausing tokio (whose
//! auto-advance would also move every socket and database timeout) passes
//! a clock of its own in [`Config::clock`](crate::Config::clock).

use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

/// A wait for an instant of a [`ServerClock`].
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A source of time the hub can also wait on.
pub trait ServerClock: rmm_core::io::Clock + std::fmt::Debug {
    /// Completes once [`now`](rmm_core::io::Clock::now) has reached
    /// `deadline` (at once when it has).
    fn sleep_until(&self, deadline: Instant) -> Sleep;
}

/// Tokio's monotonic clock and the system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioClock;

impl rmm_core::io::Clock for TokioClock {
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

    // The one place the server reads the wall clock.
    #[allow(clippy::disallowed_methods)]
    fn unix_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

impl ServerClock for TokioClock {
    fn sleep_until(&self, deadline: Instant) -> Sleep {
        Box::pin(tokio::time::sleep_until(tokio::time::Instant::from_std(
            deadline,
        )))
    }
}

/// The wall-clock time of `clock` as the store's unix milliseconds.
pub fn unix_ms(clock: &dyn ServerClock) -> i64 {
    i64::try_from(clock.unix_ms()).unwrap_or(i64::MAX)
}

/// Milliseconds of a duration as the store counts them (saturating).
pub fn duration_ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rmm_core::io::Clock;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_follows_paused_time() {
        let clock = TokioClock;
        let t0 = clock.now();
        clock.sleep_until(t0 + Duration::from_secs(30)).await;
        assert_eq!(clock.now() - t0, Duration::from_secs(30));
        assert!(unix_ms(&clock) > 1_577_836_800_000);
    }
}
