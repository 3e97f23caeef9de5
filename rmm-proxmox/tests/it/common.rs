use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmm_proxmox::mock::MockPve;
use rmm_proxmox::{BoxFuture, Client, Clock};

/// Starts the mock; the schema is mandatory.
pub async fn mock() -> MockPve {
    MockPve::start()
        .await
        .unwrap_or_else(|e| panic!("cannot start the mock proxmox server: {e}"))
}

/// A client pinned to the mock, with a virtual clock.
pub fn client(mock: &MockPve) -> (Client, Arc<VirtualClock>) {
    let clock = Arc::new(VirtualClock::new());
    let client = Client::new(&mock.config())
        .unwrap()
        .with_clock(clock.clone());
    (client, clock)
}

/// Time that only moves when something sleeps.
#[derive(Debug)]
pub struct VirtualClock {
    base: Instant,
    offset: Mutex<Duration>,
    sleeps: Mutex<Vec<Duration>>,
}

impl VirtualClock {
    pub fn new() -> VirtualClock {
        VirtualClock {
            base: Instant::now(),
            offset: Mutex::new(Duration::ZERO),
            sleeps: Mutex::new(Vec::new()),
        }
    }

    pub fn elapsed(&self) -> Duration {
        *self.offset.lock().unwrap()
    }

    pub fn sleeps(&self) -> Vec<Duration> {
        self.sleeps.lock().unwrap().clone()
    }
}

impl Clock for VirtualClock {
    fn now(&self) -> Instant {
        self.base + *self.offset.lock().unwrap()
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        *self.offset.lock().unwrap() += duration;
        self.sleeps.lock().unwrap().push(duration);
        Box::pin(std::future::ready(()))
    }
}

/// Requests the mock saw for `method` on paths starting with `prefix`.
pub fn count(mock: &MockPve, method: &str, prefix: &str) -> usize {
    mock.requests()
        .iter()
        .filter(|r| r.method == method && r.path.starts_with(prefix))
        .count()
}
