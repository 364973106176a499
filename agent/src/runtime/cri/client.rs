//! Dialling a CRI runtime: a gRPC channel over the runtime's Unix socket, and the two CRI
//! services on it. Calls are not bounded here: an image pull may legitimately take minutes,
//! so every caller bounds its own call ([`CriClient::version`] shows how).

use std::path::PathBuf;
use std::time::Duration;

use berth_proto::cri::image_service_client::ImageServiceClient;
use berth_proto::cri::runtime_service_client::RuntimeServiceClient;
use berth_proto::cri::{VersionRequest, VersionResponse};
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::error::{AgentError, Result};

/// The CRI API version this client speaks (`runtime.v1`).
pub const CRI_VERSION: &str = "v1";

/// The RuntimeService and ImageService clients of one CRI endpoint.
#[derive(Clone)]
pub struct CriClient {
    pub endpoint: String,
    pub runtime: RuntimeServiceClient<Channel>,
    pub image: ImageServiceClient<Channel>,
}

/// The socket path of a CRI endpoint: `unix:///run/containerd/containerd.sock` (kubelet's
/// form) or a bare absolute path. Anything else (tcp://, npipe://, a relative path) is
/// refused with the reason.
pub fn socket_path(endpoint: &str) -> Result<PathBuf> {
    let config = |message: String| AgentError::Config { flag: "--container-runtime-endpoint", message };
    let path = match endpoint.split_once("://") {
        Some(("unix", path)) => path,
        Some((scheme, _)) => {
            return Err(config(format!("{endpoint:?}: only unix:// endpoints are supported, not {scheme}://")))
        }
        None => endpoint,
    };
    if !path.starts_with('/') {
        return Err(config(format!("{endpoint:?}: the socket path must be absolute (unix:///path/to/socket)")));
    }
    Ok(PathBuf::from(path))
}

/// Connects to the CRI runtime at `endpoint`, waiting at most `timeout` for the socket.
pub async fn connect(endpoint: &str, timeout: Duration) -> Result<CriClient> {
    let path = socket_path(endpoint)?;
    // The URI is required by tonic but unused: the connector below dials the socket.
    let endpoint_config = Endpoint::from_static("http://cri.local").connect_timeout(timeout);
    let channel = endpoint_config.connect_with_connector(tower::service_fn(move |_: Uri| {
        let path = path.clone();
        async move { tokio::net::UnixStream::connect(path).await.map(TokioIo::new) }
    }));
    let channel = tokio::time::timeout(timeout, channel)
        .await
        .map_err(|_| AgentError::Timeout { what: format!("connecting to the CRI runtime at {endpoint}") })?
        .map_err(|e| AgentError::Runtime(format!("connecting to the CRI runtime at {endpoint}: {e}")))?;
    Ok(CriClient {
        endpoint: endpoint.to_string(),
        runtime: RuntimeServiceClient::new(channel.clone()),
        image: ImageServiceClient::new(channel),
    })
}

impl CriClient {
    /// The runtime's name and versions (`containerd`, `1.6.20`, CRI `v1`), within `timeout`.
    pub async fn version(&self, timeout: Duration) -> Result<VersionResponse> {
        let mut runtime = self.runtime.clone();
        let request = VersionRequest { version: CRI_VERSION.to_string() };
        let answer = tokio::time::timeout(timeout, runtime.version(request))
            .await
            .map_err(|_| AgentError::Timeout { what: format!("CRI Version from {}", self.endpoint) })?;
        answer.map(|r| r.into_inner()).map_err(|s| rpc_error("Version", &self.endpoint, s))
    }
}

/// A failed CRI call, naming the call and the runtime's own message.
pub fn rpc_error(call: &str, endpoint: &str, status: tonic::Status) -> AgentError {
    AgentError::Runtime(format!("CRI {call} at {endpoint}: {} ({:?})", status.message(), status.code()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_unix_sockets_with_absolute_paths() {
        assert_eq!(
            socket_path("unix:///run/containerd/containerd.sock").unwrap(),
            PathBuf::from("/run/containerd/containerd.sock")
        );
        assert_eq!(socket_path("/tmp/c.sock").unwrap(), PathBuf::from("/tmp/c.sock"));
        let tcp = socket_path("tcp://127.0.0.1:1234").unwrap_err().to_string();
        assert!(tcp.starts_with("--container-runtime-endpoint: ") && tcp.contains("not tcp://"), "{tcp}");
        assert!(socket_path("unix://relative.sock").unwrap_err().to_string().contains("must be absolute"));
    }
}
