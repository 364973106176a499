//! The service proxy (kube-proxy's job, nftables mode) in the agent: from the node's
//! [`ServiceView`] of Services and EndpointSlices, [`model::plan`] decides each Service port's addresses and
//! endpoints, [`nft::Rules`] turns that into the agent's own nftables table: built whole at
//! start, then changed incrementally (only the chains and map elements that differ), each
//! sync one atomic `nft -f` transaction; changes arriving within [`DEBOUNCE`] are applied
//! together. A sync that fails is retried by rebuilding the table whole; the table is
//! checked every [`RESYNC`] and rebuilt if something removed it. The agent never
//! touches other tables; [`cleanup`] (`berth-agent --cleanup`) deletes its own.

pub mod model;
pub mod nft;

use std::time::{Duration, Instant};

use berth_proto::model::cidr::Ipv4Cidr;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use tokio_util::sync::CancellationToken;

use crate::command::run;
use crate::service_view::ServiceView;

/// Changes arriving within this window go into one sync.
pub const DEBOUNCE: Duration = Duration::from_millis(50);
/// How often the table is checked (and restored) without any change.
const RESYNC: Duration = Duration::from_secs(60);
/// How soon a failed sync is tried again.
const RETRY: Duration = Duration::from_secs(5);

/// What the proxy of this node needs to know.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    pub node: String,
    /// Cluster-IP traffic from outside it is masqueraded.
    pub cluster_cidr: Ipv4Cidr,
}

/// Runs the proxy until `cancel`; the rules stay in place when it stops (traffic keeps
/// flowing while the agent restarts, as with kube-proxy).
pub async fn run_proxy(view: ServiceView, settings: ProxySettings, cancel: CancellationToken) {
    enable_bridge_netfilter();
    let mut changes = view.changes();
    tokio::select! {
        _ = cancel.cancelled() => return,
        _ = view.wait_until_ready() => {}
    }
    // What the table holds (None: unknown, so the next sync rebuilds it whole).
    let mut applied: Option<nft::Rules> = None;
    let mut resync = tokio::time::interval(RESYNC);
    resync.tick().await;
    loop {
        let (rules, service_ports) = {
            let (services, slices) = view.snapshot();
            let services: Vec<&Service> = services.iter().map(|s| s.as_ref()).collect();
            let slices: Vec<&EndpointSlice> = slices.iter().map(|s| s.as_ref()).collect();
            let plans = model::plan(&services, &slices, &settings.node);
            (nft::Rules::of(&plans, &settings.cluster_cidr), plans.len())
        };
        let script = match &applied {
            Some(old) => rules.changes_from(old),
            None => rules.full(),
        };
        let mut retry = false;
        if !script.is_empty() {
            let started = Instant::now();
            let full = applied.is_none();
            match run("nft", &["-f", "-"], Some(&script)).await {
                Ok(_) => {
                    tracing::info!(service_ports, full, took = ?started.elapsed(), "service rules synced");
                    applied = Some(rules);
                }
                Err(e) => {
                    tracing::error!(error = %e, full, "service rules not applied; rebuilding them");
                    applied = None;
                    retry = true;
                }
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(RETRY), if retry => {}
            _ = resync.tick() => {
                if !crate::command::nft_table_exists(nft::TABLE).await.unwrap_or(true) {
                    tracing::warn!("the service rules' table is gone; putting it back");
                    applied = None;
                }
            }
            changed = changes.changed() => {
                if changed.is_err() {
                    return; // the watches stopped: the agent is stopping
                }
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(DEBOUNCE) => {}
                }
            }
        }
    }
}

/// Bridged pod-to-pod traffic must pass the ip hooks, or a reply from a pod on the same
/// bridge would skip the reverse NAT of a Service connection (kube-proxy requires the same
/// of `br_netfilter`). Best effort: the kernel may not have it.
fn enable_bridge_netfilter() {
    let knob = "/proc/sys/net/bridge/bridge-nf-call-iptables";
    if std::fs::read_to_string(knob).is_ok_and(|v| v.trim() != "1") {
        if let Err(e) = std::fs::write(knob, "1") {
            tracing::warn!(error = %e, "could not enable bridge netfilter; same-node Service traffic may fail");
        }
    }
}

/// Deletes the proxy's table (`berth-agent --cleanup`).
pub async fn cleanup() -> Result<(), String> {
    crate::command::delete_nft_table(nft::TABLE).await
}
