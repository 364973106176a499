//! The blocking form of [`crate::eventually`], for black-box tests that drive real
//! processes through synchronous commands (`etcdctl`, `kubectl`, `berthctl`).

use std::time::{Duration, Instant};

/// How often the condition is checked: each check usually runs a command.
const POLL: Duration = Duration::from_millis(100);

/// Polls `check` every 100 ms until it returns `Some`, and returns that value; panics
/// ("timed out after … waiting for `what`") once `timeout` has passed.
pub fn eventually<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(POLL);
    }
}
