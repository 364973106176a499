//! `berthctl member list|add|remove|promote`: the store's membership over the etcd
//! Cluster API, with etcdctl's semantics and messages (`Member 8e9e05c52164694d added to
//! cluster cdf818194e3a8c32`). Changes go to any member, which forwards them to the Raft
//! leader. `add` prints the `berth-server` flags the new server must start with, as
//! etcdctl prints the `ETCD_*` environment.

use berth_proto::etcdserverpb::cluster_client::ClusterClient;
use berth_proto::etcdserverpb::{
    Member, MemberAddRequest, MemberListResponse, MemberPromoteRequest, MemberRemoveRequest, ResponseHeader,
};
use serde_json::json;

use super::{etcd_endpoints, first_answer, hex_id, member_list, rpc_timeout};
use crate::error::{CtlError, Result};
use crate::output::table::{render, Grid};
use crate::session::Session;
use crate::{emit, Out};

/// Flags of `member`.
#[derive(Debug, clap::Args)]
pub struct MemberArgs {
    #[command(subcommand)]
    pub command: MemberCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum MemberCommand {
    /// List the members of the store.
    List(ListArgs),
    /// Add a member (then start its server with the flags printed).
    Add(AddArgs),
    /// Remove a member (by ID or name).
    Remove(TargetArgs),
    /// Promote a learner that has caught up to a voting member (by ID or name).
    Promote(TargetArgs),
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Output format: json or yaml (default: a table).
    #[arg(short = 'o', long)]
    pub output: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct AddArgs {
    /// The new member's name (its berth-server --name).
    pub name: String,
    /// The new member's peer URLs, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    pub peer_urls: Vec<String>,
    /// Add it as a non-voting learner (promote it once it has caught up).
    #[arg(long)]
    pub learner: bool,
}

#[derive(Debug, clap::Args)]
pub struct TargetArgs {
    /// Member ID (hex, as `member list` prints it) or name.
    pub member: String,
}

/// "started" once the member published its name, as etcdctl shows it.
fn member_status(m: &Member) -> &'static str {
    if m.name.is_empty() {
        "unstarted"
    } else {
        "started"
    }
}

/// `member list`'s table.
pub fn render_list(members: &[Member]) -> String {
    let header = ["ID", "STATUS", "NAME", "PEER ADDRS", "CLIENT ADDRS", "IS LEARNER"];
    let rows = members
        .iter()
        .map(|m| {
            vec![
                hex_id(m.id),
                member_status(m).to_string(),
                m.name.clone(),
                m.peer_ur_ls.join(","),
                m.client_ur_ls.join(","),
                m.is_learner.to_string(),
            ]
        })
        .collect();
    render(&Grid { header: header.iter().map(|h| h.to_string()).collect(), rows })
}

/// etcdctl's `member list -w json` shape: the header and every member, IDs as numbers.
pub fn list_json(resp: &MemberListResponse) -> serde_json::Value {
    let header = resp.header.unwrap_or_default();
    json!({
        "header": {
            "cluster_id": header.cluster_id,
            "member_id": header.member_id,
            "raft_term": header.raft_term,
        },
        "members": resp.members.iter().map(|m| {
            let mut v = json!({"ID": m.id, "name": m.name, "peerURLs": m.peer_ur_ls});
            if !m.client_ur_ls.is_empty() {
                v["clientURLs"] = json!(m.client_ur_ls);
            }
            if m.is_learner {
                v["isLearner"] = json!(true);
            }
            v
        }).collect::<Vec<_>>(),
    })
}

/// Finds a member by name, else by hex ID (names win: `abc` is a valid hex ID too).
pub fn find_member<'a>(members: &'a [Member], wanted: &str) -> Result<&'a Member> {
    if let Some(m) = members.iter().find(|m| !m.name.is_empty() && m.name == wanted) {
        return Ok(m);
    }
    let by_id = u64::from_str_radix(wanted, 16).ok().and_then(|id| members.iter().find(|m| m.id == id));
    by_id.ok_or_else(|| CtlError::usage(format!("no member named or with ID \"{wanted}\"")))
}

/// What `member add` prints: etcdctl's confirmation, then the flags to start the new server
/// with (etcdctl prints `ETCD_NAME`, `ETCD_INITIAL_CLUSTER`, … instead).
pub fn render_added(name: &str, added: &Member, members: &[Member], header: &ResponseHeader, learner: bool) -> String {
    let mut cluster = Vec::new();
    for m in members {
        let member_name = if m.id == added.id { name } else { m.name.as_str() };
        for url in &m.peer_ur_ls {
            cluster.push(format!("{member_name}={url}"));
        }
    }
    let peers = added.peer_ur_ls.join(",");
    let mut out = format!("Member {} added to cluster {}\n\n", hex_id(added.id), hex_id(header.cluster_id));
    out.push_str("Start the new server with (plus its own --data-dir, --listen-client-urls, --listen-api-url):\n\n");
    out.push_str(&format!(
        "  berth-server --name {name} \\\n    --listen-peer-urls {} --initial-advertise-peer-urls {peers} \\\n    --initial-cluster {} \\\n    --initial-cluster-state existing\n",
        added.peer_ur_ls.first().map(String::as_str).unwrap_or(""),
        cluster.join(",")
    ));
    if learner {
        out.push_str(&format!(
            "\nIt joins as a learner; once it has caught up, make it a voting member:\n\n  berthctl member promote {name}\n"
        ));
    }
    out
}

/// Deletes a removed server's identity Lease (`kube-system/berth-server-NAME`), so it no
/// longer shows as a server to discover. Best effort and bounded: the member is removed
/// whatever happens here (a removed server cannot renew it any more: it is out of the store).
async fn forget_identity(session: &mut Session, name: &str, timeout: std::time::Duration) {
    use k8s_openapi::api::coordination::v1::Lease;
    let lease = format!("berth-server-{name}");
    let delete = session.call(|client| {
        let lease = lease.clone();
        async move {
            let api = kube::Api::<Lease>::namespaced(client, "kube-system");
            match api.delete(&lease, &Default::default()).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
                Err(e) => Err(e),
            }
        }
    });
    match tokio::time::timeout(timeout * 2, delete).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(lease = %lease, error = %e, "deleting the removed server's identity Lease"),
        Err(_) => tracing::warn!(lease = %lease, "deleting the removed server's identity Lease timed out"),
    }
}

/// Runs `member …`.
pub async fn run(session: &mut Session, args: MemberArgs, out: &mut Out) -> Result<()> {
    let timeout = rpc_timeout(session)?;
    let endpoints = etcd_endpoints(session).await?;
    match args.command {
        MemberCommand::List(a) => {
            let format = a.output.as_deref().unwrap_or("");
            let (resp, _) = member_list(&endpoints, timeout).await?;
            match format {
                "" | "table" => emit(out, &render_list(&resp.members)),
                "json" => emit(out, &crate::output::to_json(&list_json(&resp))),
                "yaml" => emit(out, &crate::output::to_yaml(&list_json(&resp))),
                other => Err(CtlError::usage(format!(
                    "unable to match a printer suitable for the output format \"{other}\", allowed formats are: json,table,yaml"
                ))),
            }
        }
        MemberCommand::Add(a) => {
            let peer_urls: Vec<String> = a.peer_urls.iter().map(|u| crate::config::normalize_url(u)).collect();
            let request = MemberAddRequest { peer_ur_ls: peer_urls, is_learner: a.learner };
            // Membership changes may wait for the leader to commit: give them more time.
            let resp = first_answer(&endpoints, timeout * 4, |ch| {
                let request = request.clone();
                async move { ClusterClient::new(ch).member_add(request).await.map(|r| r.into_inner()) }
            })
            .await?;
            let added = resp.member.clone().ok_or_else(|| CtlError::usage("the server did not return the member"))?;
            let header = resp.header.unwrap_or_default();
            emit(out, &render_added(&a.name, &added, &resp.members, &header, a.learner))
        }
        MemberCommand::Remove(a) => {
            let (list, _) = member_list(&endpoints, timeout).await?;
            let member = find_member(&list.members, &a.member)?;
            let (id, name) = (member.id, member.name.clone());
            let resp = first_answer(&endpoints, timeout * 4, |ch| async move {
                ClusterClient::new(ch).member_remove(MemberRemoveRequest { id }).await.map(|r| r.into_inner())
            })
            .await?;
            if !name.is_empty() {
                forget_identity(session, &name, timeout).await;
            }
            let cluster = resp.header.map_or(0, |h| h.cluster_id);
            emit(out, &format!("Member {} removed from cluster {}\n", hex_id(id), hex_id(cluster)))
        }
        MemberCommand::Promote(a) => {
            let (list, _) = member_list(&endpoints, timeout).await?;
            let id = find_member(&list.members, &a.member)?.id;
            let resp = first_answer(&endpoints, timeout * 4, |ch| async move {
                ClusterClient::new(ch).member_promote(MemberPromoteRequest { id }).await.map(|r| r.into_inner())
            })
            .await?;
            let cluster = resp.header.map_or(0, |h| h.cluster_id);
            emit(out, &format!("Member {} promoted in cluster {}\n", hex_id(id), hex_id(cluster)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members() -> Vec<Member> {
        vec![
            Member {
                id: 0x8e9e05c52164694d,
                name: "n1".into(),
                peer_ur_ls: vec!["http://127.0.0.1:2380".into()],
                client_ur_ls: vec!["http://127.0.0.1:2379".into()],
                is_learner: false,
            },
            Member {
                id: 0xabc,
                name: "n2".into(),
                peer_ur_ls: vec!["http://127.0.0.1:12380".into()],
                client_ur_ls: vec!["http://127.0.0.1:12379".into()],
                is_learner: false,
            },
            Member {
                id: 0x1f,
                name: String::new(),
                peer_ur_ls: vec!["http://127.0.0.1:22380".into()],
                client_ur_ls: vec![],
                is_learner: true,
            },
        ]
    }

    #[test]
    fn list_table_reads_like_etcdctl() {
        assert_eq!(
            render_list(&members()),
            "\
ID                 STATUS      NAME   PEER ADDRS               CLIENT ADDRS             IS LEARNER
8e9e05c52164694d   started     n1     http://127.0.0.1:2380    http://127.0.0.1:2379    false
abc                started     n2     http://127.0.0.1:12380   http://127.0.0.1:12379   false
1f                 unstarted          http://127.0.0.1:22380                            true
"
        );
    }

    #[test]
    fn list_json_is_etcdctls_shape() {
        let resp = MemberListResponse {
            header: Some(ResponseHeader { cluster_id: 7, member_id: 0xabc, revision: 3, raft_term: 2 }),
            members: members()[1..].to_vec(),
        };
        assert_eq!(
            list_json(&resp),
            json!({
                "header": {"cluster_id": 7, "member_id": 2748, "raft_term": 2},
                "members": [
                    {"ID": 2748, "name": "n2", "peerURLs": ["http://127.0.0.1:12380"], "clientURLs": ["http://127.0.0.1:12379"]},
                    {"ID": 31, "name": "", "peerURLs": ["http://127.0.0.1:22380"], "isLearner": true},
                ],
            })
        );
    }

    #[test]
    fn members_are_found_by_name_before_id() {
        let mut ms = members();
        assert_eq!(find_member(&ms, "n2").unwrap().id, 0xabc);
        assert_eq!(find_member(&ms, "8e9e05c52164694d").unwrap().name, "n1");
        ms[0].name = "abc".into();
        assert_eq!(find_member(&ms, "abc").unwrap().id, 0x8e9e05c52164694d, "the name wins over the ID");
        assert_eq!(find_member(&ms, "zz").unwrap_err().to_string(), "error: no member named or with ID \"zz\"");
    }

    #[test]
    fn add_prints_the_flags_for_the_new_server() {
        let ms = members();
        let header = ResponseHeader { cluster_id: 0xc1, ..Default::default() };
        assert_eq!(
            render_added("n3", &ms[2], &ms, &header, true),
            "\
Member 1f added to cluster c1

Start the new server with (plus its own --data-dir, --listen-client-urls, --listen-api-url):

  berth-server --name n3 \\
    --listen-peer-urls http://127.0.0.1:22380 --initial-advertise-peer-urls http://127.0.0.1:22380 \\
    --initial-cluster n1=http://127.0.0.1:2380,n2=http://127.0.0.1:12380,n3=http://127.0.0.1:22380 \\
    --initial-cluster-state existing

It joins as a learner; once it has caught up, make it a voting member:

  berthctl member promote n3
"
        );
    }
}
