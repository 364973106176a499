//! The pod network of one node, as CNI configuration for the runtime: every pod that is not
//! `hostNetwork` gets its own network namespace and an address from the node's
//! `spec.podCIDR`, on a Linux bridge.
//!
//! [`conflist`] (pure) is the `10-berth.conflist` the agent writes into the runtime's CNI
//! configuration directory: the `bridge` plugin (the node's end of the bridge is the pods'
//! gateway, `ipMasq` masquerades traffic that leaves the pod network, hairpin so a pod can
//! reach itself through a Service later) with `host-local` IPAM on the podCIDR, then
//! `portmap` for `hostPort`s. containerd adds the loopback interface itself. Routes between
//! nodes and Services are the next layer's (issue 19); this one leaves them alone.

use std::path::{Path, PathBuf};

use berth_proto::model::cidr::Ipv4Cidr;
use serde_json::{json, Value};

use crate::error::{AgentError, Result};

/// The file name: CNI loads the lexically first configuration in the directory.
pub const CONFLIST_NAME: &str = "10-berth.conflist";
/// The CNI spec version written (supported by containerd 1.6 and plugins 1.1).
pub const CNI_VERSION: &str = "1.0.0";

/// What the pod network of a node needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodNetwork {
    /// The node's `spec.podCIDR`, e.g. `10.244.1.0/24`.
    pub pod_cidr: String,
    /// The bridge's name (at most 15 bytes, a Linux interface name).
    pub bridge: String,
    /// Where host-local keeps its leases (under the agent's data dir, so they go with it).
    pub ipam_dir: PathBuf,
    /// The bridge plugin masquerades what leaves the podCIDR (single-node pod network);
    /// false when the agent's pod network across nodes masquerades (only what leaves the
    /// cluster CIDR: pod-to-pod traffic between nodes keeps its source address).
    pub masquerade: bool,
}

/// Whether `name` can be a Linux bridge's name (1–15 bytes, no '/' or whitespace).
pub fn check_bridge_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 15 || name.contains(['/', ' ', '\t', '\n']) {
        return Err(AgentError::Config {
            flag: "--pod-bridge",
            message: format!("{name:?} is not a Linux interface name (1–15 bytes, no '/' or spaces)"),
        });
    }
    Ok(())
}

/// Waits (until `cancel`) for the leader to assign this node's `spec.podCIDR`, then writes
/// the pod network's conflist for the agent's own containerd, which loads it on its own.
/// Until then sandboxes fail with the runtime's "cni plugin not initialized" and are
/// retried by the pod workers.
pub async fn configure_when_assigned(
    client: kube::Client,
    node: String,
    conf_dir: PathBuf,
    network: PodNetwork,
    cancel: tokio_util::sync::CancellationToken,
) {
    let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client);
    let mut waiting_logged = false;
    loop {
        let assigned = match nodes.get_opt(&node).await {
            Ok(Some(n)) => n.spec.and_then(|s| s.pod_cidr).filter(|c| !c.is_empty()),
            _ => None,
        };
        if let Some(pod_cidr) = assigned {
            match write_conflist(&conf_dir, &PodNetwork { pod_cidr: pod_cidr.clone(), ..network }) {
                Ok(path) => tracing::info!(%pod_cidr, conflist = %path.display(), "pod network configured"),
                Err(e) => tracing::error!(%pod_cidr, error = %e, "the node's podCIDR is unusable; pods cannot start"),
            }
            return;
        }
        if !waiting_logged {
            tracing::info!(node = %node, "waiting for the node's podCIDR (the leader's node IPAM assigns it)");
            waiting_logged = true;
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
        }
    }
}

/// The CNI configuration list for `network` (pure). Errors name the bad field.
pub fn conflist(network: &PodNetwork) -> Result<Value> {
    let cidr: Ipv4Cidr =
        network.pod_cidr.parse().map_err(|message| AgentError::Config { flag: "spec.podCIDR", message })?;
    if cidr.prefix > 30 {
        let message = format!("{cidr}: a /{} leaves no addresses for pods (use /30 or larger)", cidr.prefix);
        return Err(AgentError::Config { flag: "spec.podCIDR", message });
    }
    check_bridge_name(&network.bridge)?;
    Ok(json!({
        "cniVersion": CNI_VERSION,
        "name": "berth",
        "plugins": [
            {
                "type": "bridge",
                "bridge": network.bridge,
                "isGateway": true,
                "ipMasq": network.masquerade,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": network.pod_cidr}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": network.ipam_dir.display().to_string(),
                }
            },
            {"type": "portmap", "capabilities": {"portMappings": true}}
        ]
    }))
}

/// Writes the conflist into `conf_dir` (atomically: the runtime watches the directory).
pub fn write_conflist(conf_dir: &Path, network: &PodNetwork) -> Result<PathBuf> {
    let text = serde_json::to_string_pretty(&conflist(network)?).expect("JSON values serialize");
    std::fs::create_dir_all(conf_dir).map_err(|e| AgentError::io("creating", conf_dir, e))?;
    let path = conf_dir.join(CONFLIST_NAME);
    let temporary = conf_dir.join(format!(".{CONFLIST_NAME}.tmp"));
    std::fs::write(&temporary, text).map_err(|e| AgentError::io("writing", &temporary, e))?;
    std::fs::rename(&temporary, &path).map_err(|e| AgentError::io("renaming", &path, e))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network(cidr: &str, bridge: &str) -> PodNetwork {
        PodNetwork {
            pod_cidr: cidr.into(),
            bridge: bridge.into(),
            ipam_dir: PathBuf::from("/var/lib/berth-agent/cni/ipam"),
            masquerade: true,
        }
    }

    #[test]
    fn the_conflist_is_a_bridge_on_the_pod_cidr_with_portmap() {
        let list = conflist(&network("10.244.1.0/24", "berth0")).unwrap();
        assert_eq!(list["cniVersion"], "1.0.0");
        let bridge = &list["plugins"][0];
        assert_eq!((bridge["type"].as_str(), bridge["bridge"].as_str()), (Some("bridge"), Some("berth0")));
        assert_eq!(bridge["ipMasq"], true);
        let across_nodes = PodNetwork { masquerade: false, ..network("10.244.1.0/24", "berth0") };
        assert_eq!(conflist(&across_nodes).unwrap()["plugins"][0]["ipMasq"], false, "the agent masquerades");
        assert_eq!(bridge["ipam"]["ranges"][0][0]["subnet"], "10.244.1.0/24");
        assert_eq!(bridge["ipam"]["dataDir"], "/var/lib/berth-agent/cni/ipam");
        assert_eq!(list["plugins"][1]["capabilities"]["portMappings"], true);
    }

    #[test]
    fn bad_cidrs_and_bridge_names_are_refused_with_the_reason() {
        let err = |cidr: &str, bridge: &str| conflist(&network(cidr, bridge)).unwrap_err().to_string();
        assert!(err("10.244.1.0", "b").contains("is not a CIDR"));
        assert!(err("10.244.1.7/24", "b").contains("host bits are set (the network is 10.244.1.0/24)"));
        assert!(err("10.244.1.0/33", "b").contains("prefix \"33\" is not 0–32"));
        assert!(err("10.244.1.0/31", "b").contains("no addresses"));
        assert!(err("fd00::/64", "b").contains("is not an IPv4 address"));
        assert!(err("10.244.1.0/24", "a-very-long-bridge").contains("not a Linux interface name"));
        assert!(err("10.244.1.0/24", "").starts_with("--pod-bridge: "));
    }
}
