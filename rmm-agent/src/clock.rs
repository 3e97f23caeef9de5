//! The real clock, for the code that takes an [`rmm_core::io::Clock`]
//! (rmm-core never reads the clock itself; drivers do, here).

use std::time::Instant;

use rmm_core::io::Clock;

/// The system's monotonic and wall clocks.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn unix_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_time_is_after_2020() {
        assert!(SystemClock.unix_ms() > 1_577_836_800_000);
        let a = SystemClock.now();
        assert!(SystemClock.now() >= a);
    }
}
