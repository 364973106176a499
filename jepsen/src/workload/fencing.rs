//! What the fencing checker needs, gathered after every control-plane run
//! (`fence-history`):
//!
//! * the leader epoch's claims, from the store's own history of `/berth/leader-epoch`: the
//!   latest value, then each earlier one read at the revision just before the later one was
//!   written, back to the first (each claim is one version of the key);
//! * the fenced writes, from the servers' logs: every server logs `fenced write committed
//!   term=T revision=R` (target `berth_fence`, enabled by the harness's `--log-level`) when
//!   a write of its leader tasks commits.

use std::path::PathBuf;
use std::time::Duration;

use super::{retry_until, WorkloadCtx};
use crate::client::CallError;
use crate::history::{Call, OpType, TermAt};

/// The leader epoch's key (`berth_control::registry::fence::EPOCH_KEY`).
pub const EPOCH_KEY: &str = "/berth/leader-epoch";
/// The servers' log line of a committed fenced write.
const COMMITTED: &str = "fenced write committed";

/// Reads the claims and the servers' logs and records `fence-history`.
pub async fn record(ctx: &WorkloadCtx, server_logs: &[PathBuf], patience: Duration) {
    let process = (ctx.concurrency * 1000 + 505) as i64;
    let (node, _) = ctx.nodes[0].clone();
    ctx.recorder.invoke(process, &node, Call::FenceHistory { claims: vec![], writes: vec![], complete: false });
    let writes =
        server_logs.iter().flat_map(|p| committed_writes(&std::fs::read_to_string(p).unwrap_or_default())).collect();
    match claims(ctx, patience).await {
        Ok((claims, complete)) => {
            ctx.recorder.record(process, OpType::Ok, &node, Call::FenceHistory { claims, writes, complete }, None)
        }
        Err(e) => ctx.recorder.record(
            process,
            OpType::Fail,
            &node,
            Call::FenceHistory { claims: vec![], writes, complete: false },
            Some(e.message),
        ),
    }
}

/// The epoch's claims, oldest first, and whether the history reached the first claim.
async fn claims(ctx: &WorkloadCtx, patience: Duration) -> Result<(Vec<TermAt>, bool), CallError> {
    let client = ctx.client_for(0);
    let until = tokio::time::Instant::now() + patience;
    let mut out = vec![];
    let mut at_revision = 0; // 0: the latest
    loop {
        let read = retry_until(until, || client.get_prefix(EPOCH_KEY, at_revision, false)).await;
        let kvs = match read {
            Ok((kvs, _)) => kvs,
            Err(e) if e.message.contains("compacted") => return Ok((reversed(out), false)),
            Err(e) => return Err(e),
        };
        let Some(kv) = kvs.into_iter().find(|kv| kv.key == EPOCH_KEY.as_bytes()) else { break };
        let term = std::str::from_utf8(&kv.value).ok().and_then(|t| t.parse().ok()).unwrap_or(0);
        out.push(TermAt { term, revision: kv.mod_revision });
        if kv.version <= 1 {
            break;
        }
        at_revision = kv.mod_revision - 1;
    }
    Ok((reversed(out), true))
}

fn reversed(mut v: Vec<TermAt>) -> Vec<TermAt> {
    v.reverse();
    v
}

/// Every `fenced write committed term=T revision=R` line of a server log (pure; colour
/// codes tolerated).
pub fn committed_writes(log: &str) -> Vec<TermAt> {
    log.lines()
        .filter(|l| l.contains(COMMITTED))
        .filter_map(|l| {
            let plain = crate::procs::strip_ansi(l);
            let field = |name: &str| plain.split_whitespace().find_map(|w| w.strip_prefix(name)).map(str::to_string);
            Some(TermAt { term: field("term=")?.parse().ok()?, revision: field("revision=")?.parse().ok()? })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_writes_are_read_from_plain_and_coloured_logs() {
        let log = "2026-12-05T10:00:00Z DEBUG berth_fence: fenced write committed term=3 revision=120\n\
                   2026-12-05T10:00:01Z  INFO berth_control: something else term=9 revision=1\n\
                   \u{1b}[2m2026-12-05T10:00:02Z\u{1b}[0m \u{1b}[34mDEBUG\u{1b}[0m \u{1b}[2mberth_fence\u{1b}[0m\u{1b}[2m:\u{1b}[0m fenced write committed \u{1b}[3mterm\u{1b}[0m\u{1b}[2m=\u{1b}[0m4 \u{1b}[3mrevision\u{1b}[0m\u{1b}[2m=\u{1b}[0m131\n";
        assert_eq!(committed_writes(log), [TermAt { term: 3, revision: 120 }, TermAt { term: 4, revision: 131 }]);
    }
}
