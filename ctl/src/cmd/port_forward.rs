//! `berthctl port-forward POD [LOCAL:]REMOTE…`: listens on 127.0.0.1 and forwards each
//! accepted connection to the pod's port through the API server's `pods/{name}/portforward`
//! (kube-rs's client: WebSocket, one session per connection), as kubectl does; runs until
//! interrupted.

use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use tokio::net::TcpListener;

use crate::error::{CtlError, Result};
use crate::session::Session;
use crate::{emit, Out};

/// Flags of `port-forward`.
#[derive(Debug, clap::Args)]
pub struct PortForwardArgs {
    /// POD or pod/NAME.
    pub pod: String,
    /// [LOCAL_PORT:]REMOTE_PORT, one or more (LOCAL_PORT 0 or empty picks a free one).
    #[arg(required = true)]
    pub ports: Vec<String>,
    /// Addresses to listen on (only loopback and localhost are accepted here).
    #[arg(long, default_value = "127.0.0.1")]
    pub address: String,
}

/// `[LOCAL:]REMOTE` → (local, remote) (pure); a lone port is both.
pub fn parse_mapping(text: &str) -> std::result::Result<(u16, u16), String> {
    let port = |s: &str, what: &str| -> std::result::Result<u16, String> {
        s.parse::<u16>().map_err(|_| format!("Error parsing {what} port '{s}': not a number between 0 and 65535"))
    };
    match text.split_once(':') {
        Some((local, remote)) => {
            let remote = port(remote, "remote")?;
            if remote == 0 {
                return Err(format!("remote port must be > 0: {text}"));
            }
            Ok((if local.is_empty() { 0 } else { port(local, "local")? }, remote))
        }
        None => {
            let p = port(text, "local")?;
            if p == 0 {
                return Err(format!("remote port must be > 0: {text}"));
            }
            Ok((p, p))
        }
    }
}

pub async fn run(session: &mut Session, args: PortForwardArgs, out: &mut Out) -> Result<()> {
    let name =
        args.pod.strip_prefix("pod/").or_else(|| args.pod.strip_prefix("pods/")).unwrap_or(&args.pod).to_string();
    if name.contains('/') {
        return Err(CtlError::usage(format!("port-forward needs a pod, not {:?}", args.pod)));
    }
    if !matches!(args.address.as_str(), "127.0.0.1" | "localhost") {
        return Err(CtlError::usage("--address: only 127.0.0.1 (localhost) is supported"));
    }
    let mappings: Vec<(u16, u16)> =
        args.ports.iter().map(|p| parse_mapping(p)).collect::<std::result::Result<_, _>>().map_err(CtlError::Usage)?;
    let namespace = session.namespace()?;
    let client = session.client().await?;
    let pods: Api<Pod> = Api::namespaced(client, &namespace);
    let pod = pods.get(&name).await.map_err(|e| session.error(e))?;
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or_default();
    if phase != "Running" {
        return Err(CtlError::usage(format!(
            "unable to forward port because pod is not running. Current status={phase}"
        )));
    }
    let mut tasks = Vec::new();
    for (local, remote) in mappings {
        let listener = TcpListener::bind(("127.0.0.1", local))
            .await
            .map_err(|e| CtlError::io(format!("listening on 127.0.0.1:{local}"), e))?;
        let bound = listener.local_addr().map_err(|e| CtlError::io("listening", e))?.port();
        emit(out, &format!("Forwarding from 127.0.0.1:{bound} -> {remote}\n"))?;
        let (pods, name) = (pods.clone(), name.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else { return };
                eprintln!("Handling connection for {bound}");
                let (pods, name) = (pods.clone(), name.clone());
                tokio::spawn(async move {
                    let mut forwarder = match pods.portforward(&name, &[remote]).await {
                        Ok(f) => f,
                        Err(e) => return eprintln!("error: an error occurred forwarding {bound} -> {remote}: {e}"),
                    };
                    let Some(mut upstream) = forwarder.take_stream(remote) else { return };
                    let _ = tokio::io::copy_bidirectional(&mut conn, &mut upstream).await;
                    drop(upstream);
                    let _ = forwarder.join().await;
                });
            }
        }));
    }
    let _ = tokio::signal::ctrl_c().await;
    for t in tasks {
        t.abort();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mappings_parse_as_kubectls() {
        assert_eq!(parse_mapping("8080").unwrap(), (8080, 8080));
        assert_eq!(parse_mapping("9000:80").unwrap(), (9000, 80));
        assert_eq!(parse_mapping(":80").unwrap(), (0, 80));
        assert!(parse_mapping("x:80").unwrap_err().contains("local port 'x'"));
        assert!(parse_mapping("80:0").unwrap_err().contains("remote port must be > 0"));
    }
}
