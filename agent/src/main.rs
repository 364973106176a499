//! `berth-agent` entry point: flags in, [`berth_agent::Agent::run`] or
//! [`berth_agent::hollow::run`] out. Exit code 2 for bad flags or configuration, 1 for a
//! failure while running.

use berth_agent::cli::{AgentArgs, Mode};
use berth_agent::config::{AgentConfig, HollowConfig};
use clap::Parser;
use tokio_util::sync::CancellationToken;

fn main() {
    let args = AgentArgs::parse(); // exits 2 on unknown or malformed flags
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log_level).unwrap_or_else(|e| {
        eprintln!("berth-agent: --log-level: {e}");
        std::process::exit(2)
    });
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let runtime = tokio::runtime::Runtime::new().expect("starting the tokio runtime");
    if args.cleanup {
        std::process::exit(runtime.block_on(async {
            let cleaned = match berth_agent::podnet::cleanup().await {
                Ok(routes) => berth_agent::proxy::cleanup().await.map(|()| routes),
                Err(e) => Err(e),
            };
            match cleaned {
                Ok(routes) => {
                    tracing::info!(routes, "removed the pod network's routes and rules");
                    0
                }
                Err(e) => {
                    eprintln!("berth-agent: --cleanup: {e}");
                    1
                }
            }
        }));
    }
    if args.remove_leftover_pods {
        std::process::exit(runtime.block_on(remove_leftover_pods(args)));
    }
    let code = runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        // Kept alive to the end: it owns the balancer every API connection goes through.
        let connection = match args.connect(&shutdown).await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("berth-agent: {e}");
                return 2;
            }
        };
        let client = connection.client.clone();
        let mode = match args.into_mode() {
            Ok(m) => m,
            Err(e) => {
                eprintln!("berth-agent: {e}");
                return 2;
            }
        };
        let signal = shutdown.clone();
        tokio::spawn(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            tracing::info!("shutting down");
            signal.cancel();
        });
        // Callers of the agent's port present certificates of the CA the agent trusts.
        let client_ca_pem = connection.ca_pem.clone();
        let result = match mode {
            Mode::Agent(config) => {
                berth_agent::Agent::run(client, AgentConfig { client_ca_pem, ..config }, shutdown).await
            }
            Mode::Hollow(config) => {
                berth_agent::hollow::run(client, HollowConfig { client_ca_pem, ..config }, shutdown).await
            }
        };
        match result {
            Ok(()) => 0,
            Err(e @ berth_agent::AgentError::Config { .. }) => {
                eprintln!("berth-agent: {e}");
                2
            }
            Err(e) => {
                eprintln!("berth-agent: {e}");
                1
            }
        }
    });
    std::process::exit(code);
}

/// `--remove-leftover-pods`: what a killed agent left in its own containerd, removed
/// without any API server. Exit code 2 for a configuration that has no own containerd.
async fn remove_leftover_pods(args: AgentArgs) -> i32 {
    use berth_agent::{AgentError, RuntimeKind};
    let config = match args.into_mode() {
        Ok(Mode::Agent(config)) => config,
        Ok(Mode::Hollow(_)) => {
            eprintln!("berth-agent: --remove-leftover-pods: hollow nodes have no pods to remove");
            return 2;
        }
        Err(e) => {
            eprintln!("berth-agent: {e}");
            return 2;
        }
    };
    let options = match &config.runtime {
        RuntimeKind::Containerd(options) if options.endpoint.is_none() => options,
        _ => {
            let e = AgentError::Config {
                flag: "--remove-leftover-pods",
                message: "needs --runtime containerd without --container-runtime-endpoint (the agent's own containerd)"
                    .into(),
            };
            eprintln!("berth-agent: {e}");
            return 2;
        }
    };
    match berth_agent::runtime::cri::remove_leftover_sandboxes(options, &config.data_dir).await {
        Ok(n) => {
            tracing::info!(removed = n, "removed the leftover pod sandboxes");
            0
        }
        Err(e) => {
            eprintln!("berth-agent: {e}");
            1
        }
    }
}
