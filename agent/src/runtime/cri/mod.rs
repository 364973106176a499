//! The CRI side of the agent: containers from OCI images through the Container Runtime
//! Interface v1, as the kubelet runs them, against containerd.
//!
//! * [`airgap`]: image archives imported into the own containerd at start;
//! * [`auth`]: registry credentials from imagePullSecrets (pure);
//! * [`client`]: dialling a CRI endpoint (`unix:///…`, kubelet's `--container-runtime-endpoint`
//!   format) and the typed RuntimeService/ImageService clients over it;
//! * [`cni`]: the pod network as CNI configuration (bridge + host-local on the podCIDR);
//! * [`image_gc`]: which unused images to remove when the image filesystem fills (pure);
//! * [`containerd`]: the agent's own containerd (config, root, state, socket and CNI
//!   directories under the agent's data dir), started and stopped by the agent when no
//!   endpoint is given, as k3s does.
//!
//! * [`linux`]: resources and security context of a container config (pure);
//! * [`runtime`]: the agent's `Runtime` over CRI (pods → sandboxes, containers from
//!   images); [`connect_or_start`] gives it its CRI client.

pub mod airgap;
pub mod auth;
pub mod client;
pub mod cni;
pub mod containerd;
pub mod image_gc;
pub mod linux;
pub mod runtime;

pub use client::{connect, socket_path, CriClient};
pub use containerd::{Containerd, ContainerdLayout, ContainerdSettings};
pub use runtime::CriRuntime;

/// The CRI client for `options`: the given endpoint's, or — with none — that of a
/// containerd the agent starts under `data_dir` (returned too: dropping it stops it).
pub async fn connect_or_start(
    options: &crate::config::CriOptions,
    data_dir: &std::path::Path,
) -> crate::Result<(CriClient, Option<Containerd>)> {
    const WAIT: std::time::Duration = std::time::Duration::from_secs(30);
    if let Some(endpoint) = &options.endpoint {
        let client = connect(endpoint, WAIT).await?;
        client.version(WAIT).await?;
        return Ok((client, None));
    }
    let layout = ContainerdLayout::under(data_dir);
    let settings = ContainerdSettings::for_this_process(&options.sandbox_image, &options.cni_bin_dir);
    let own = Containerd::start(std::path::Path::new("containerd"), layout, &settings, WAIT).await?;
    let images = options.images_dir.clone().unwrap_or_else(|| data_dir.join("images"));
    airgap::import_all(&images, &own.layout.socket()).await;
    Ok((own.client.clone(), Some(own)))
}

/// How long removing what a killed agent left may take: its containerd starting again,
/// then each sandbox stopped (CNI DEL) and removed.
pub const REMOVE_LEFTOVERS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(90);

/// Removes every pod sandbox (with its containers, network namespace and mounts) that the
/// agent's own containerd under `data_dir` still has — what an agent that was killed
/// leaves behind — through that containerd started again on the same directories, then
/// stops it. Returns how many sandboxes were removed. Run it only while no agent uses
/// `data_dir`: a running agent would recreate its pods.
pub async fn remove_leftover_sandboxes(
    options: &crate::config::CriOptions,
    data_dir: &std::path::Path,
) -> crate::Result<usize> {
    use berth_proto::cri::{ListPodSandboxRequest, RemovePodSandboxRequest, StopPodSandboxRequest};
    let layout = ContainerdLayout::under(data_dir);
    if !layout.root().is_dir() {
        return Ok(0); // its containerd never ran
    }
    let settings = ContainerdSettings::for_this_process(&options.sandbox_image, &options.cni_bin_dir);
    let work = async {
        let containerd = Containerd::start(
            std::path::Path::new("containerd"),
            layout,
            &settings,
            std::time::Duration::from_secs(30),
        )
        .await?;
        let mut runtime = containerd.client.runtime.clone();
        let list = runtime
            .list_pod_sandbox(ListPodSandboxRequest { filter: None })
            .await
            .map_err(|status| crate::AgentError::Runtime(format!("listing the pod sandboxes: {}", status.message())))?;
        let mut removed = 0;
        for sandbox in list.into_inner().items {
            let id = sandbox.id;
            // StopPodSandbox kills the containers and tears the pod network down (CNI DEL);
            // RemovePodSandbox then removes the containers, their mounts and the sandbox.
            let stopped = runtime.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: id.clone() }).await;
            let result = match stopped {
                Ok(_) => {
                    runtime.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: id.clone() }).await.map(drop)
                }
                Err(status) => Err(status),
            };
            match result {
                Ok(()) => removed += 1,
                Err(status) => {
                    tracing::warn!(sandbox = %id, error = %status.message(), "could not remove a leftover sandbox")
                }
            }
        }
        Ok(removed)
    };
    tokio::time::timeout(REMOVE_LEFTOVERS_TIMEOUT, work).await.unwrap_or_else(|_| {
        Err(crate::AgentError::Runtime(format!(
            "removing the leftover pod sandboxes took longer than {REMOVE_LEFTOVERS_TIMEOUT:?}"
        )))
    })
}
