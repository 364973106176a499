//! `berthctl`: parses the command line and hands it to [`berth_ctl::run`].

use clap::Parser;

fn main() {
    let cli = match berth_ctl::cli::Cli::try_parse() {
        Ok(cli) => cli,
        // kubectl exits 1 on a bad flag or argument (clap's default is 2); help and
        // version requests still exit 0.
        Err(e) => {
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    tracing_subscriber::fmt()
        // Silent unless asked: errors reach the user once, in kubectl's words, from `run`.
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BERTHCTL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime starts");
    let code = runtime.block_on(berth_ctl::run(cli));
    // Streams (logs -f, get -w) may still hold the runtime; do not wait for them.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    std::process::exit(code);
}
