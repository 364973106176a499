//! The register workload: reads, writes and compare-and-sets of small integers on a few
//! independent keys. Workers are split into groups of [`GROUP`]; each group hammers one key
//! and moves on to a fresh key after [`OPS_PER_KEY`] operations. Bounding the operations
//! per key keeps each per-key linearizability search small (the search is exponential in
//! concurrency and in indeterminate operations), exactly as Jepsen's etcd tests do.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rand::Rng;

use super::{spawn_clients, WorkloadCtx};
use crate::history::Call;

pub const PREFIX: &str = "jepsen/r/";
/// Workers sharing one key.
pub const GROUP: usize = 5;
/// Operations on a key before its group moves on.
pub const OPS_PER_KEY: u64 = 200;
/// Values are drawn from 0..VALUES so that CAS compares hit often.
const VALUES: i64 = 5;

/// One random operation on `key` (Jepsen's r/w/cas mix).
pub fn random_call(rng: &mut impl Rng, key: String) -> Call {
    match rng.random_range(0..10) {
        0..=3 => Call::Read { key, value: None },
        4..=6 => Call::Write { key, value: rng.random_range(0..VALUES) },
        _ => Call::Cas { key, from: rng.random_range(0..VALUES), to: rng.random_range(0..VALUES) },
    }
}

pub fn spawn(ctx: &Arc<WorkloadCtx>) -> Vec<tokio::task::JoinHandle<()>> {
    let groups = ctx.concurrency.div_ceil(GROUP).max(1);
    let counters: Arc<Vec<AtomicU64>> = Arc::new((0..groups).map(|_| AtomicU64::new(0)).collect());
    spawn_clients(ctx, 0, ctx.concurrency, |worker| {
        let counters = counters.clone();
        let group = worker / GROUP;
        move |rng: &mut rand::rngs::StdRng| {
            let n = counters[group].fetch_add(1, Ordering::Relaxed);
            random_call(rng, format!("{PREFIX}{group}-{}", n / OPS_PER_KEY))
        }
    })
}
