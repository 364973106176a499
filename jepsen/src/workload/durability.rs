//! The durability workload: unique adds (as in the set workload) while the `kill-all`
//! nemesis SIGKILLs every member at once, again and again. At the end the harness kills
//! everything one last time, restarts it, records whether each member booted, and reads the
//! whole set through each member: every acknowledged add must be on every member.

use std::sync::Arc;
use std::time::Duration;

use super::set::record_element_read;
use super::{retry_until, WorkloadCtx};
use crate::db::DbCluster;
use crate::history::{Call, OpType};

pub fn spawn(ctx: &Arc<WorkloadCtx>) -> Vec<tokio::task::JoinHandle<()>> {
    super::set::spawn(ctx)
}

/// Kill -9 all, restart all, then per member: did it boot, and what does it hold.
pub async fn final_phase(ctx: &WorkloadCtx, cluster: &mut DbCluster, patience: Duration) {
    let process = (ctx.concurrency * 1000) as i64;
    let names = cluster.names();
    for name in &names {
        let _ = cluster.kill(name);
    }
    for name in &names {
        if let Err(e) = cluster.restart(name) {
            ctx.recorder.record(process, OpType::Fail, name, Call::Boot { member: name.clone() }, Some(e.to_string()));
        }
    }
    let deadline = tokio::time::Instant::now() + patience;
    let mut booted = vec![];
    for name in &names {
        let Ok(client) = cluster.client(name, Duration::from_secs(2)) else { continue };
        ctx.recorder.invoke(process, name, Call::Boot { member: name.clone() });
        match retry_until(deadline, || client.get("jepsen/booted?", false)).await {
            Ok(_) => {
                ctx.recorder.record(process, OpType::Ok, name, Call::Boot { member: name.clone() }, None);
                booted.push(client);
            }
            Err(e) => {
                let exited = cluster.nodes.iter_mut().find(|n| &n.name == name).and_then(|n| n.member.exit_status());
                let why = match exited {
                    Some(status) => format!("process exited with {status}; last error {e}"),
                    None => format!("no answer within {}s: {e}", patience.as_secs()),
                };
                ctx.recorder.record(process, OpType::Fail, name, Call::Boot { member: name.clone() }, Some(why));
            }
        }
    }
    for client in booted {
        let member = client.node.clone();
        record_element_read(ctx, process, &client, patience, |elements| Call::MemberRead {
            member: member.clone(),
            elements,
        })
        .await;
    }
}
