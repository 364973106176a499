//! The set workload: every operation adds a unique element (its own key, so adds never
//! conflict); after healing, a linearizable read of the whole set on every node. The
//! checker looks for acknowledged adds that are missing and elements nobody added.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{retry_until, spawn_clients, WorkloadCtx};
use crate::client::Client;
use crate::history::{Call, OpType};

pub const PREFIX: &str = "jepsen/s/";

/// Elements are zero-padded so keys sort numerically.
pub fn element_key(prefix: &str, element: u64) -> String {
    format!("{prefix}{element:020}")
}

/// The element stored under `key` (its value), if it is one of ours.
pub fn parse_element(value: &[u8]) -> Option<u64> {
    std::str::from_utf8(value).ok()?.parse().ok()
}

pub fn spawn(ctx: &Arc<WorkloadCtx>) -> Vec<tokio::task::JoinHandle<()>> {
    let next = Arc::new(AtomicU64::new(0));
    spawn_clients(ctx, 0, ctx.concurrency, |_| {
        let next = next.clone();
        move |_: &mut rand::rngs::StdRng| Call::Add { element: next.fetch_add(1, Ordering::Relaxed) }
    })
}

/// Reads the whole set through every node (linearizable), retrying each for up to `patience`.
pub async fn final_reads(ctx: &WorkloadCtx, patience: Duration) {
    for worker in 0..ctx.nodes.len() {
        let client = ctx.client_for(worker);
        let process = (ctx.concurrency * 1000 + worker) as i64;
        record_element_read(ctx, process, &client, patience, |elements| Call::ReadAll { elements }).await;
    }
}

/// One recorded read of every element through `client`: invoke `call(None)`, then `ok` with
/// `call(Some(elements))`, or `fail` once `patience` is spent.
pub async fn record_element_read(
    ctx: &WorkloadCtx,
    process: i64,
    client: &Client,
    patience: Duration,
    call: impl Fn(Option<Vec<u64>>) -> Call,
) {
    ctx.recorder.invoke(process, &client.node, call(None));
    let deadline = tokio::time::Instant::now() + patience;
    match retry_until(deadline, || client.get_prefix(PREFIX, 0, false)).await {
        Ok((kvs, _)) => {
            let elements = kvs.iter().filter_map(|kv| parse_element(&kv.value)).collect();
            ctx.recorder.record(process, OpType::Ok, &client.node, call(Some(elements)), None);
        }
        Err(e) => ctx.recorder.record(process, OpType::Fail, &client.node, call(None), Some(e.message)),
    }
}
