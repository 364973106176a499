//! Publishes the current leader as the holder of the `berth-scheduler` and
//! `berth-controller-manager` Leases in `kube-system` (so `kubectl get leases -n
//! kube-system` shows who runs them), and creates the namespaces every cluster has, again
//! every `system_namespaces_every` in case something deleted one (as kube-apiserver's
//! system namespaces controller).
//!
//! Every renewal is a replace carrying the resourceVersion just read: if another leader
//! wrote in between, this write fails with 409 and is counted as rejected.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use tokio_util::sync::CancellationToken;

use crate::tasks::context::TaskContext;

pub const LEASE_NAMES: [&str; 2] = ["berth-scheduler", "berth-controller-manager"];
pub const SYSTEM_NAMESPACES: [&str; 4] = ["default", "kube-system", "kube-public", "kube-node-lease"];
/// Renewal period; the lease duration is three periods, as client-go's leader election.
pub const RENEW_EVERY: Duration = Duration::from_secs(2);
const LEASE_SECONDS: i32 = 6;

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

/// The lease as this holder renews it (pure).
pub fn renewed(current: Option<Lease>, name: &str, holder: &str) -> Lease {
    let mut lease = current.unwrap_or_else(|| Lease {
        metadata: ObjectMeta { name: Some(name.into()), namespace: Some("kube-system".into()), ..Default::default() },
        ..Default::default()
    });
    let spec = lease.spec.get_or_insert_with(Default::default);
    if spec.holder_identity.as_deref() != Some(holder) {
        spec.holder_identity = Some(holder.into());
        spec.acquire_time = Some(now());
        spec.lease_transitions = Some(spec.lease_transitions.map_or(0, |t| t + 1));
    }
    spec.lease_duration_seconds = Some(LEASE_SECONDS);
    spec.renew_time = Some(now());
    lease
}

async fn ensure_namespaces(ctx: &TaskContext) {
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    for ns in SYSTEM_NAMESPACES {
        let obj =
            Namespace { metadata: ObjectMeta { name: Some(ns.into()), ..Default::default() }, ..Default::default() };
        match api.create(&PostParams::default(), &obj).await {
            Ok(_) => ctx.status.record(true),
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => {
                ctx.status.record(false);
                tracing::debug!(namespace = ns, error = %e, "creating a system namespace");
            }
        }
    }
}

async fn renew(ctx: &TaskContext, api: &Api<Lease>, name: &str) -> Result<(), kube::Error> {
    let current = api.get_opt(name).await?;
    let exists = current.is_some();
    let lease = renewed(current, name, &ctx.server);
    if exists {
        // Carries the resourceVersion read above: a precondition.
        api.replace(name, &PostParams::default(), &lease).await?;
    } else {
        api.create(&PostParams::default(), &lease).await?;
    }
    Ok(())
}

pub async fn run(ctx: TaskContext, cancel: CancellationToken) {
    ensure_namespaces(&ctx).await;
    let mut namespaces_checked = tokio::time::Instant::now();
    let api: Api<Lease> = Api::namespaced(ctx.client.clone(), "kube-system");
    let mut tick = tokio::time::interval(RENEW_EVERY.min(ctx.settings.system_namespaces_every));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        if namespaces_checked.elapsed() >= ctx.settings.system_namespaces_every {
            namespaces_checked = tokio::time::Instant::now();
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = ensure_namespaces(&ctx) => {}
            }
        }
        for name in LEASE_NAMES {
            let result = tokio::select! {
                _ = cancel.cancelled() => return,
                r = renew(&ctx, &api, name) => r,
            };
            if let Err(e) = &result {
                tracing::debug!(lease = name, error = %e, "lease renewal rejected");
            }
            ctx.status.record(result.is_ok());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takeover_counts_a_transition() {
        let first = renewed(None, "berth-scheduler", "a");
        let spec = first.spec.as_ref().unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("a"));
        assert_eq!(spec.lease_transitions, Some(0));
        let again = renewed(Some(first.clone()), "berth-scheduler", "a");
        assert_eq!(again.spec.as_ref().unwrap().lease_transitions, Some(0));
        let taken = renewed(Some(first), "berth-scheduler", "b");
        assert_eq!(taken.spec.as_ref().unwrap().lease_transitions, Some(1));
    }
}
