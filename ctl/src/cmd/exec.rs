//! `berthctl exec POD [-c CONTAINER] [-i] [-t] -- COMMAND [ARGS…]`: runs a command in a
//! container through the API server's `pods/{name}/exec` (kube-rs's client, WebSocket
//! `v5.channel.k8s.io`), as kubectl does: stdout and stderr copied out, stdin copied in
//! with `-i` (its end closes the command's stdin), a terminal with `-t` (local terminal in
//! raw mode meanwhile, its size sent), and berthctl exits with the command's exit code.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, AttachParams};
use tokio::io::AsyncWriteExt;

use crate::error::{CtlError, Result};
use crate::session::Session;
use crate::Out;

/// Flags of `exec`.
#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// POD, then `--` and the command.
    #[arg(required = true)]
    pub pod: String,
    /// The command and its arguments (after `--`).
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
    /// Container name [default: the default-container annotation, else the first].
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// Pass stdin to the container.
    #[arg(short = 'i', long)]
    pub stdin: bool,
    /// Stdin is a TTY.
    #[arg(short = 't', long)]
    pub tty: bool,
}

/// The exit code in a failed exec's Status (`NonZeroExitCode`, cause `ExitCode`) (pure).
pub fn exit_code(status: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Status) -> Option<i32> {
    if status.status.as_deref() == Some("Success") {
        return Some(0);
    }
    status
        .details
        .as_ref()?
        .causes
        .as_ref()?
        .iter()
        .find(|c| c.reason.as_deref() == Some("ExitCode"))?
        .message
        .as_ref()?
        .parse()
        .ok()
}

/// Raw mode for the local terminal while a `-t` session runs; restored when dropped.
struct RawTerminal {
    saved: libc::termios,
}

impl RawTerminal {
    fn enter() -> Option<RawTerminal> {
        // SAFETY: tcgetattr/tcsetattr on stdin with a valid termios buffer.
        unsafe {
            if libc::isatty(0) != 1 {
                return None;
            }
            let mut saved: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut saved) != 0 {
                return None;
            }
            let mut raw = saved;
            libc::cfmakeraw(&mut raw);
            libc::tcsetattr(0, libc::TCSANOW, &raw);
            Some(RawTerminal { saved })
        }
    }

    fn size() -> Option<(u16, u16)> {
        // SAFETY: TIOCGWINSZ fills a winsize.
        unsafe {
            let mut ws: libc::winsize = std::mem::zeroed();
            (libc::ioctl(1, libc::TIOCGWINSZ, &mut ws) == 0 && ws.ws_col > 0).then_some((ws.ws_col, ws.ws_row))
        }
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        // SAFETY: restores the attributes read in `enter`.
        unsafe {
            libc::tcsetattr(0, libc::TCSANOW, &self.saved);
        }
    }
}

pub async fn run(session: &mut Session, args: ExecArgs, _out: &mut Out) -> Result<()> {
    let namespace = session.namespace()?;
    let client = session.client().await?;
    let pods: Api<Pod> = Api::namespaced(client, &namespace);
    let pod = pods.get(&args.pod).await.map_err(|e| session.error(e))?;
    let container = match &args.container {
        Some(c) => c.clone(),
        None => {
            let annotated = pod
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(berth_proto::model::well_known::ANNOTATION_DEFAULT_CONTAINER))
                .cloned();
            let first = pod.spec.as_ref().and_then(|s| s.containers.first()).map(|c| c.name.clone());
            annotated.or(first).ok_or_else(|| CtlError::usage(format!("pod {} has no containers", args.pod)))?
        }
    };
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or_default();
    if matches!(phase, "Succeeded" | "Failed") {
        return Err(CtlError::usage(format!(
            "cannot exec into a container in a completed pod; current phase is {phase}"
        )));
    }
    let params =
        AttachParams::default().container(container).stdin(args.stdin).stdout(true).stderr(!args.tty).tty(args.tty);
    let mut process = pods.exec(&args.pod, args.command.clone(), &params).await.map_err(|e| session.error(e))?;
    let raw = if args.tty { RawTerminal::enter() } else { None };
    if let (Some(mut sizes), Some((width, height))) = (process.terminal_size(), RawTerminal::size()) {
        use futures::SinkExt;
        let _ = sizes.send(kube::api::TerminalSize { width, height }).await;
    }
    let mut copies = Vec::new();
    if let Some(mut stdout) = process.stdout() {
        copies.push(tokio::spawn(async move {
            let mut out = tokio::io::stdout();
            let _ = tokio::io::copy(&mut stdout, &mut out).await;
            let _ = out.flush().await;
        }));
    }
    if let Some(mut stderr) = process.stderr() {
        copies.push(tokio::spawn(async move {
            let mut err = tokio::io::stderr();
            let _ = tokio::io::copy(&mut stderr, &mut err).await;
        }));
    }
    if let Some(mut stdin) = process.stdin() {
        // Not joined: a terminal's stdin never ends; its end otherwise closes the
        // command's stdin (v5's close channel).
        tokio::spawn(async move {
            let mut input = tokio::io::stdin();
            let _ = tokio::io::copy(&mut input, &mut stdin).await;
            let _ = stdin.shutdown().await;
        });
    }
    let status = process.take_status().expect("taken once");
    let status = status.await;
    for c in copies {
        let _ = c.await;
    }
    drop(raw);
    match status.as_ref().and_then(exit_code) {
        Some(0) => Ok(()),
        Some(code) => Err(CtlError::Exit(code)),
        None => {
            let message = status.and_then(|s| s.message).unwrap_or_else(|| "the session ended without a status".into());
            Err(CtlError::usage(message))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_come_from_the_status() {
        let failed: k8s_openapi::apimachinery::pkg::apis::meta::v1::Status =
            serde_json::from_value(serde_json::json!({
            "status": "Failure", "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": "3"}]}}))
            .unwrap();
        assert_eq!(exit_code(&failed), Some(3));
        let ok: k8s_openapi::apimachinery::pkg::apis::meta::v1::Status =
            serde_json::from_value(serde_json::json!({"status": "Success"})).unwrap();
        assert_eq!(exit_code(&ok), Some(0));
        assert_eq!(exit_code(&Default::default()), None);
    }
}
