//! `berthctl cluster status`: every server of the replicated control plane — its URLs,
//! health, Raft role, term, commit and applied index, store revision, database size, and
//! which leader-only tasks (scheduler, controllers) it runs.
//!
//! Sources: the etcd Cluster API (`MemberList`: who the members are), the Maintenance API
//! on each member's own client URL (`Status`: its Raft view; a member that does not answer
//! within the timeout is unhealthy), each server's `/readyz`, and the `kube-system` Leases
//! (server identities with their API URLs; the leader-task holders). Gathering is I/O;
//! assembling and rendering ([`assemble`], [`render_table`]) are pure.

use std::collections::BTreeMap;
use std::time::Duration;

use berth_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use berth_proto::etcdserverpb::{Member, StatusRequest, StatusResponse};
use serde::Serialize;

use super::{bounded, etcd_endpoints, fetch_lease_view, hex_id, human_bytes, rpc_timeout, EtcdTarget, LeaseView};
use crate::error::{CtlError, Result};
use crate::output::table::{render, Grid};
use crate::session::Session;
use crate::{emit, Out};

/// Flags of `cluster`.
#[derive(Debug, clap::Args)]
pub struct ClusterArgs {
    #[command(subcommand)]
    pub command: ClusterCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum ClusterCommand {
    /// Every server: URLs, health, Raft role and indexes, revision, DB size, leader tasks.
    Status(StatusArgs),
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Output format: json or yaml (default: a table).
    #[arg(short = 'o', long)]
    pub output: Option<String>,
}

/// One member's `Status` outcome.
#[derive(Debug, Clone)]
pub enum Probe {
    /// The member answered `Status` on this client URL.
    Answered(StatusResponse),
    /// It did not (why).
    Failed(String),
    /// It has no client URLs yet (added but never started).
    Unstarted,
}

/// One server as `cluster status` reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerStatus {
    pub name: String,
    /// Member ID, hex.
    pub id: String,
    /// Kubernetes API URL (from the server's identity Lease; empty when unknown).
    #[serde(rename = "apiURL")]
    pub api_url: String,
    #[serde(rename = "clientURLs")]
    pub client_urls: Vec<String>,
    #[serde(rename = "peerURLs")]
    pub peer_urls: Vec<String>,
    pub healthy: bool,
    /// Why it is unhealthy (empty when healthy).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub error: String,
    /// `leader`, `follower`, `learner`, or `unknown` when it did not answer.
    pub role: String,
    pub is_leader: bool,
    pub is_learner: bool,
    pub raft_term: u64,
    pub raft_index: u64,
    pub raft_applied_index: u64,
    pub revision: i64,
    pub db_size: i64,
    /// Leader-only tasks this server runs (their Lease names).
    pub tasks: Vec<String>,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    /// Cluster ID, hex.
    pub cluster_id: String,
    /// Name of the Raft leader as the answering members see it (empty: none).
    pub leader: String,
    /// Leader-task Lease name → holder.
    pub tasks: BTreeMap<String, String>,
    pub servers: Vec<ServerStatus>,
    /// Why the Leases (API URLs, task holders) could not be read through the API, if so.
    #[serde(rename = "apiError", skip_serializing_if = "String::is_empty")]
    pub api_error: String,
}

/// What was gathered for one member.
#[derive(Debug, Clone)]
pub struct Observation {
    pub member: Member,
    pub probe: Probe,
    /// `/readyz` of its API server: `None` when its API URL is unknown or not probed.
    pub api_ready: Option<std::result::Result<(), String>>,
}

/// Builds the report from what was gathered (pure).
pub fn assemble(cluster_id: u64, observations: &[Observation], leases: &LeaseView) -> ClusterStatus {
    // The leader as the member with the highest term that answered reports it.
    let leader_id = observations
        .iter()
        .filter_map(|o| match &o.probe {
            Probe::Answered(s) if s.leader != 0 => Some((s.raft_term, s.leader)),
            _ => None,
        })
        .max()
        .map(|(_, id)| id);
    let mut servers: Vec<ServerStatus> = observations
        .iter()
        .map(|o| {
            let m = &o.member;
            let name = if m.name.is_empty() { "<unstarted>".to_string() } else { m.name.clone() };
            let identity = leases.identities.get(&m.name);
            let api_url = identity.map(|i| i.api_url.clone()).unwrap_or_default();
            let tasks: Vec<String> =
                leases.tasks.iter().filter(|(_, holder)| **holder == m.name).map(|(lease, _)| lease.clone()).collect();
            let mut s = ServerStatus {
                name,
                id: hex_id(m.id),
                api_url,
                client_urls: m.client_ur_ls.clone(),
                peer_urls: m.peer_ur_ls.clone(),
                healthy: false,
                error: String::new(),
                role: "unknown".into(),
                is_leader: false,
                is_learner: m.is_learner,
                raft_term: 0,
                raft_index: 0,
                raft_applied_index: 0,
                revision: 0,
                db_size: 0,
                tasks,
            };
            match &o.probe {
                Probe::Answered(st) => {
                    s.is_leader = leader_id == Some(m.id);
                    s.role = if s.is_leader {
                        "leader"
                    } else if m.is_learner || st.is_learner {
                        "learner"
                    } else {
                        "follower"
                    }
                    .into();
                    s.raft_term = st.raft_term;
                    s.raft_index = st.raft_index;
                    s.raft_applied_index = st.raft_applied_index;
                    s.revision = st.header.as_ref().map_or(0, |h| h.revision);
                    s.db_size = st.db_size;
                    s.healthy = true;
                    if !st.errors.is_empty() {
                        s.healthy = false;
                        s.error = st.errors.join("; ");
                    } else if st.leader == 0 {
                        s.healthy = false;
                        s.error = "no leader".into();
                    } else if let Some(Err(e)) = &o.api_ready {
                        s.healthy = false;
                        s.error = format!("API: {e}");
                    }
                }
                Probe::Failed(e) => s.error = e.clone(),
                Probe::Unstarted => s.error = "not started".into(),
            }
            s
        })
        .collect();
    servers.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
    let leader = servers.iter().find(|s| s.is_leader).map(|s| s.name.clone()).unwrap_or_default();
    ClusterStatus {
        cluster_id: hex_id(cluster_id),
        leader,
        tasks: leases.tasks.clone(),
        servers,
        api_error: String::new(),
    }
}

/// Short names of the leader-task leases for the table (`scheduler`, `controller-manager`).
fn task_label(lease: &str) -> &str {
    lease.strip_prefix("berth-").unwrap_or(lease)
}

/// The default table, kubectl's layout.
pub fn render_table(status: &ClusterStatus) -> String {
    let header = [
        "NAME",
        "ID",
        "API URL",
        "CLIENT URL",
        "HEALTH",
        "ROLE",
        "TERM",
        "COMMIT INDEX",
        "APPLIED INDEX",
        "REVISION",
        "DB SIZE",
        "TASKS",
    ];
    let dash = |v: String, known: bool| if known { v } else { "-".to_string() };
    let rows = status
        .servers
        .iter()
        .map(|s| {
            let answered = s.role != "unknown";
            let tasks: Vec<&str> = s.tasks.iter().map(|t| task_label(t)).collect();
            vec![
                s.name.clone(),
                s.id.clone(),
                if s.api_url.is_empty() { "<unknown>".into() } else { s.api_url.clone() },
                s.client_urls.first().cloned().unwrap_or_else(|| "<none>".into()),
                if s.healthy { "healthy".into() } else { "unhealthy".into() },
                s.role.clone(),
                dash(s.raft_term.to_string(), answered),
                dash(s.raft_index.to_string(), answered),
                dash(s.raft_applied_index.to_string(), answered),
                dash(s.revision.to_string(), answered),
                dash(human_bytes(s.db_size.max(0) as u64), answered),
                if tasks.is_empty() { "<none>".into() } else { tasks.join(",") },
            ]
        })
        .collect();
    render(&Grid { header: header.iter().map(|h| h.to_string()).collect(), rows })
}

/// The notes printed under the table for unhealthy servers (stderr, like kubectl's warnings).
pub fn render_problems(status: &ClusterStatus) -> String {
    let mut out = String::new();
    for s in status.servers.iter().filter(|s| !s.healthy) {
        out.push_str(&format!("{} is unhealthy: {}\n", s.name, s.error));
    }
    if status.leader.is_empty() {
        out.push_str("no member reports a Raft leader\n");
    }
    if !status.api_error.is_empty() {
        out.push_str(&format!("API URLs and leader tasks unknown: {}\n", status.api_error));
    }
    out
}

/// `Status` of one member on its first client URL that answers.
async fn probe_member(member: &Member, endpoints: &EtcdTarget, timeout: Duration) -> Probe {
    if member.client_ur_ls.is_empty() {
        return Probe::Unstarted;
    }
    let mut last = String::new();
    for url in &member.client_ur_ls {
        let channel = match endpoints.channel(url, timeout) {
            Ok(c) => c,
            Err(e) => {
                last = e.to_string();
                continue;
            }
        };
        match bounded(timeout, MaintenanceClient::new(channel).status(StatusRequest {})).await {
            Ok(resp) => return Probe::Answered(resp.into_inner()),
            Err(status) => last = format!("{url}: {}", super::status_text(&status)),
        }
    }
    Probe::Failed(last)
}

/// `/readyz` of one API server, bounded. A plain HTTP/1.0 exchange (over TLS trusting
/// `ca_pem` for https URLs) rather than a kube-rs client: an API that is not ready answers
/// 500, which kube-rs would log as an error while `up` is only waiting for it.
pub async fn api_ready(url: &str, ca_pem: Option<&str>, timeout: Duration) -> std::result::Result<(), String> {
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
    async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, request: &str) -> Result<Vec<u8>, String> {
        stream.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).await.map_err(|e| e.to_string())?;
        Ok(reply)
    }
    let parsed = url::Url::parse(url).map_err(|e| format!("invalid URL {url}: {e}"))?;
    let host = parsed.host_str().ok_or_else(|| format!("{url}: no host"))?.to_string();
    let port = parsed.port_or_known_default().unwrap_or(80);
    let tls = match parsed.scheme() {
        "http" => None,
        "https" => {
            let ca = ca_pem.ok_or_else(|| format!("{url}: no CA to check the server's certificate with"))?;
            let config = berth_proto::tls::client_config(ca, None).map_err(|e| e.to_string())?;
            let name = rustls::pki_types::ServerName::try_from(host.trim_matches(['[', ']']).to_string())
                .map_err(|e| format!("{url}: {e}"))?;
            Some((tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)), name))
        }
        other => return Err(format!("{url}: unsupported scheme {other}")),
    };
    let exchange = async {
        let stream =
            tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port)).await.map_err(|e| e.to_string())?;
        let request = format!("GET /readyz HTTP/1.0\r\nHost: {host}:{port}\r\n\r\n");
        let reply = match tls {
            None => exchange(stream, &request).await?,
            Some((connector, name)) => {
                let stream = connector.connect(name, stream).await.map_err(|e| format!("TLS: {e}"))?;
                exchange(stream, &request).await?
            }
        };
        let text = String::from_utf8_lossy(&reply);
        let status = text.split_whitespace().nth(1).unwrap_or("");
        if status == "200" {
            Ok(())
        } else {
            let body = text.split("\r\n\r\n").nth(1).unwrap_or("").trim();
            Err(format!(
                "/readyz answered {status}{}",
                if body.is_empty() { String::new() } else { format!(": {body}") }
            ))
        }
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(result) => result,
        Err(_) => Err("timed out".into()),
    }
}

/// Gathers everything (concurrently, each part bounded) and assembles the report.
pub async fn gather(session: &mut Session) -> Result<ClusterStatus> {
    let timeout = rpc_timeout(session)?;
    let endpoints = etcd_endpoints(session).await?;
    let (list, _) = super::member_list(&endpoints, timeout).await?;
    let ca_pem = session.target()?.ca_pem();
    // The store's view is still worth printing without the API's.
    let (leases, api_error) = match fetch_lease_view(session, timeout).await {
        Ok(view) => (view, String::new()),
        Err(e) => (LeaseView::default(), e.to_string().trim_start_matches("error: ").to_string()),
    };
    let probes = futures::future::join_all(list.members.iter().map(|m| {
        let api_url = leases.identities.get(&m.name).map(|i| i.api_url.clone()).filter(|u| !u.is_empty());
        let ca_pem = ca_pem.clone();
        let endpoints = &endpoints;
        async move {
            let (probe, api) = tokio::join!(probe_member(m, endpoints, timeout), async {
                match &api_url {
                    Some(url) => Some(api_ready(url, ca_pem.as_deref(), timeout).await),
                    None => None,
                }
            });
            Observation { member: m.clone(), probe, api_ready: api }
        }
    }))
    .await;
    let cluster_id = list.header.as_ref().map_or(0, |h| h.cluster_id);
    Ok(ClusterStatus { api_error, ..assemble(cluster_id, &probes, &leases) })
}

/// Runs `cluster status`.
pub async fn run(session: &mut Session, args: ClusterArgs, out: &mut Out) -> Result<()> {
    let ClusterCommand::Status(args) = args.command;
    let format = args.output.as_deref().unwrap_or("");
    if !matches!(format, "" | "json" | "yaml" | "table") {
        return Err(CtlError::usage(format!(
            "unable to match a printer suitable for the output format \"{format}\", allowed formats are: json,table,yaml"
        )));
    }
    let status = gather(session).await?;
    match format {
        "json" => emit(out, &crate::output::to_json(&serde_json::to_value(&status).expect("serializable"))),
        "yaml" => emit(out, &crate::output::to_yaml(&serde_json::to_value(&status).expect("serializable"))),
        _ => {
            emit(out, &render_table(&status))?;
            let problems = render_problems(&status);
            if !problems.is_empty() {
                eprint!("{problems}");
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::IdentityRecord;
    use berth_proto::etcdserverpb::ResponseHeader;

    fn member(id: u64, name: &str, port: u16, learner: bool) -> Member {
        Member {
            id,
            name: name.into(),
            peer_ur_ls: vec![format!("http://127.0.0.1:{}", port + 1)],
            client_ur_ls: vec![format!("http://127.0.0.1:{port}")],
            is_learner: learner,
        }
    }

    fn answered(leader: u64, term: u64, index: u64, revision: i64) -> Probe {
        Probe::Answered(StatusResponse {
            header: Some(ResponseHeader { revision, ..Default::default() }),
            leader,
            raft_term: term,
            raft_index: index,
            raft_applied_index: index,
            db_size: 1_234_567,
            ..Default::default()
        })
    }

    fn observations() -> (Vec<Observation>, LeaseView) {
        let obs = vec![
            Observation { member: member(0xa1, "n1", 2379, false), probe: answered(0xb2, 3, 120, 57), api_ready: None },
            Observation {
                member: member(0xb2, "n2", 12379, false),
                probe: answered(0xb2, 3, 120, 57),
                api_ready: Some(Ok(())),
            },
            Observation {
                member: member(0xc3, "n3", 22379, false),
                probe: Probe::Failed("http://127.0.0.1:22379: connection refused".into()),
                api_ready: Some(Err("refused".into())),
            },
            Observation { member: member(0xd4, "", 0, true), probe: Probe::Unstarted, api_ready: None },
        ];
        let mut leases = LeaseView::default();
        leases.identities.insert(
            "n2".into(),
            IdentityRecord { api_url: "http://127.0.0.1:16443".into(), fresh: true, ..Default::default() },
        );
        leases.identities.insert(
            "n1".into(),
            IdentityRecord { api_url: "http://127.0.0.1:6443".into(), fresh: true, ..Default::default() },
        );
        leases.tasks.insert("berth-scheduler".into(), "n2".into());
        leases.tasks.insert("berth-controller-manager".into(), "n2".into());
        (obs, leases)
    }

    #[test]
    fn the_table_shows_one_leader_its_tasks_and_the_dead_member() {
        let (obs, leases) = observations();
        let mut obs = obs;
        obs[3].member.client_ur_ls.clear();
        let status = assemble(0xfeed, &obs, &leases);
        assert_eq!(status.leader, "n2");
        assert_eq!(
            render_table(&status),
            "\
NAME          ID    API URL                  CLIENT URL               HEALTH      ROLE       TERM   COMMIT INDEX   APPLIED INDEX   REVISION   DB SIZE   TASKS
<unstarted>   d4    <unknown>                <none>                   unhealthy   unknown    -      -              -               -          -         <none>
n1            a1    http://127.0.0.1:6443    http://127.0.0.1:2379    healthy     follower   3      120            120             57         1.2 MB    <none>
n2            b2    http://127.0.0.1:16443   http://127.0.0.1:12379   healthy     leader     3      120            120             57         1.2 MB    controller-manager,scheduler
n3            c3    <unknown>                http://127.0.0.1:22379   unhealthy   unknown    -      -              -               -          -         <none>
"
        );
        assert_eq!(
            render_problems(&status),
            "<unstarted> is unhealthy: not started\nn3 is unhealthy: http://127.0.0.1:22379: connection refused\n"
        );
    }

    #[test]
    fn json_names_fields_like_etcd() {
        let (obs, leases) = observations();
        let status = assemble(0xfeed, &obs[1..2], &leases);
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "clusterId": "feed",
                "leader": "n2",
                "tasks": {"berth-controller-manager": "n2", "berth-scheduler": "n2"},
                "servers": [{
                    "name": "n2", "id": "b2", "apiURL": "http://127.0.0.1:16443",
                    "clientURLs": ["http://127.0.0.1:12379"], "peerURLs": ["http://127.0.0.1:12380"],
                    "healthy": true, "role": "leader", "isLeader": true, "isLearner": false,
                    "raftTerm": 3, "raftIndex": 120, "raftAppliedIndex": 120, "revision": 57, "dbSize": 1234567,
                    "tasks": ["berth-controller-manager", "berth-scheduler"],
                }],
            })
        );
    }

    #[test]
    fn an_api_that_is_not_ready_makes_the_server_unhealthy() {
        let (mut obs, leases) = observations();
        obs[1].api_ready = Some(Err("timed out".into()));
        let status = assemble(1, &obs, &leases);
        let n2 = status.servers.iter().find(|s| s.name == "n2").unwrap();
        assert!(!n2.healthy);
        assert_eq!(n2.error, "API: timed out");
        assert!(n2.is_leader, "still the Raft leader");
    }

    #[test]
    fn no_leader_is_reported() {
        let (mut obs, leases) = observations();
        obs[0].probe = answered(0, 4, 130, 57);
        obs[1].probe = Probe::Failed("timed out".into());
        let status = assemble(1, &obs[..2], &leases);
        assert_eq!(status.leader, "");
        assert!(status.servers.iter().all(|s| !s.healthy));
        assert!(render_problems(&status).ends_with("no member reports a Raft leader\n"));
        let status = ClusterStatus { api_error: "timed out".into(), ..status };
        assert!(render_problems(&status).ends_with("API URLs and leader tasks unknown: timed out\n"));
    }
}
