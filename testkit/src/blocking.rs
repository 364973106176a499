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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_first_value_the_check_gives() {
        let mut calls = 0;
        let v = eventually(Duration::from_secs(5), "the second call", || {
            calls += 1;
            (calls == 2).then_some(calls)
        });
        assert_eq!(v, 2);
    }

    #[test]
    #[should_panic(expected = "waiting for a thing that never happens")]
    fn a_timeout_names_what_was_awaited() {
        eventually(Duration::from_millis(250), "a thing that never happens", || None::<()>);
    }
}
