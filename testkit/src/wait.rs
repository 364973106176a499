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
