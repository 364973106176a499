//! Polling a condition in async tests until it holds, with a deadline and a message naming
//! what was awaited (so a timeout says what never happened).

use std::time::{Duration, Instant};

/// How often the condition is checked.
const POLL: Duration = Duration::from_millis(50);

/// Polls `check` every 50 ms until it returns `Some`, and returns that value; panics
/// ("timed out after … waiting for `what`") once `timeout` has passed.
///
/// `check` may be an async closure (`async || …`, which can borrow the test's state) or a
/// closure returning a future (`|| async { … }`).
pub async fn eventually<T>(timeout: Duration, what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_the_first_value_the_check_gives() {
        let mut calls = 0;
        let v = eventually(Duration::from_secs(5), "the third call", async || {
            calls += 1;
            (calls == 3).then_some(calls)
        })
        .await;
        assert_eq!(v, 3);
    }

    #[tokio::test]
    #[should_panic(expected = "waiting for a thing that never happens")]
    async fn a_timeout_names_what_was_awaited() {
        eventually(Duration::from_millis(120), "a thing that never happens", async || None::<()>).await;
    }
}
