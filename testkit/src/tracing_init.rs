//! Logging for tests: the code under test logs through `tracing`; this routes it to the
//! test harness's captured output.

/// Installs a `tracing` subscriber writing to the test's captured output, filtered by
/// `RUST_LOG` (default `warn`). Safe to call from every test: only the first call installs.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
        .with_test_writer()
        .try_init();
}
