//! `berthctl`, Berth's command-line client: kubectl's verbs, flags, output and error wording
//! against a Berth cluster's Kubernetes API (through kube-rs), plus commands that operate
//! the replicated control plane itself over the etcd v3 API (`cluster status`, `member`,
//! `snapshot`) and a one-command local cluster (`up` / `down`).
//!
//! Layout: [`cli`] assembles the command line; [`config`] finds the cluster; [`session`]
//! holds the connection (with failover between servers); [`resources`] maps command-line
//! words to resource types; [`output`] prints; [`cmd`] has one module per kubectl verb
//! family and [`ops`] Berth's own commands.

pub mod cli;
pub mod cmd;
pub mod config;
pub mod error;
pub mod ops;
pub mod output;
pub mod resources;
pub mod session;

use std::io::Write;

pub use error::{CtlError, Result};
use session::Session;

/// Where commands print their normal output.
pub type Out = dyn Write + Send;

/// Writes `text` to `out`, mapping I/O errors (a closed pipe ends the command quietly).
pub fn emit(out: &mut Out, text: &str) -> Result<()> {
    out.write_all(text.as_bytes()).and_then(|_| out.flush()).map_err(|e| CtlError::io("writing output", e))
}

/// Runs a parsed command line; returns the process exit code. Errors are printed to stderr
/// in kubectl's wording.
pub async fn run(cli: cli::Cli) -> i32 {
    let mut stdout = std::io::stdout();
    match dispatch(cli, &mut stdout).await {
        Ok(()) => 0,
        Err(CtlError::Exit(code)) => code,
        Err(CtlError::Io { source, .. }) if source.kind() == std::io::ErrorKind::BrokenPipe => 0,
        Err(e) => {
            let _ = stdout.flush();
            eprintln!("{e}");
            e.exit_code()
        }
    }
}

/// Runs one command, printing to `out`.
pub async fn dispatch(cli: cli::Cli, out: &mut Out) -> Result<()> {
    use cli::Command as C;
    let mut s = Session::new(cli.global);
    match cli.command {
        C::Get(a) => cmd::get::run(&mut s, a, out).await,
        C::Describe(a) => cmd::describe::run(&mut s, a, out).await,
        C::Apply(a) => cmd::apply::run_apply(&mut s, a, out).await,
        C::Create(a) => cmd::apply::run_create(&mut s, a, out).await,
        C::Run(a) => cmd::run::run_run(&mut s, a, out).await,
        C::Expose(a) => cmd::run::run_expose(&mut s, a, out).await,
        C::Delete(a) => cmd::delete::run(&mut s, a, out).await,
        C::Edit(a) => cmd::edit::run(&mut s, a, out).await,
        C::Scale(a) => cmd::scale::run(&mut s, a, out).await,
        C::Token(a) => cmd::token::run(&mut s, a, out).await,
        C::Autoscale(a) => cmd::autoscale::run(&mut s, a, out).await,
        C::Set(a) => cmd::set::run(&mut s, a, out).await,
        C::Label(a) => cmd::label::run_label(&mut s, a, out).await,
        C::Annotate(a) => cmd::label::run_annotate(&mut s, a, out).await,
        C::Taint(a) => cmd::node::run_taint(&mut s, a, out).await,
        C::Cordon(a) => cmd::node::run_cordon(&mut s, a, true, out).await,
        C::Uncordon(a) => cmd::node::run_cordon(&mut s, a, false, out).await,
        C::Drain(a) => cmd::node::run_drain(&mut s, a, out).await,
        C::Rollout(a) => cmd::rollout::run(&mut s, a, out).await,
        C::Logs(a) => cmd::logs::run(&mut s, a, out).await,
        C::Exec(a) => cmd::exec::run(&mut s, a, out).await,
        C::PortForward(a) => cmd::port_forward::run(&mut s, a, out).await,
        C::Top(a) => cmd::top::run(&mut s, a, out).await,
        C::ApiResources(a) => cmd::info::run_api_resources(&mut s, a, out).await,
        C::Version(a) => cmd::info::run_version(&mut s, a, out).await,
        C::ClusterInfo(a) => cmd::info::run_cluster_info(&mut s, a, out).await,
        C::Completion(a) => completion(&a.shell, out),
        C::Cluster(a) => ops::cluster::run(&mut s, a, out).await,
        C::Member(a) => ops::member::run(&mut s, a, out).await,
        C::Snapshot(a) => ops::snapshot::run(&mut s, a, out).await,
        C::Certs(a) => ops::certs::run(a, out),
        C::Up(a) => ops::local::run_up(&mut s, a, out).await,
        C::Down(a) => ops::local::run_down(&mut s, a, out).await,
    }
}

/// `completion bash|zsh`: clap_complete's script for the whole command tree.
fn completion(shell: &str, out: &mut Out) -> Result<()> {
    use clap::CommandFactory;
    let shell = match shell {
        "bash" => clap_complete::Shell::Bash,
        "zsh" => clap_complete::Shell::Zsh,
        other => return Err(CtlError::usage(format!("Unsupported shell type \"{other}\"."))),
    };
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cli::Cli::command(), "berthctl", &mut buf);
    out.write_all(&buf).map_err(|e| CtlError::io("writing output", e))
}
