//! Connections to other members' peer ports, shared by the Raft network and by request
//! forwarding, plus the fault hooks in-process cluster tests use to cut links.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use berth_proto::berthraftpb::raft_peer_client::RaftPeerClient;
use parking_lot::{Mutex, RwLock};
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use super::PeerNode;
use crate::error::{Result, StoreError};

/// Largest peer message (a batch of log entries or a snapshot chunk).
pub const MAX_PEER_MESSAGE: usize = 256 << 20;

/// Links that are cut or silent. Empty in production; tests partition members with it. A
/// cut link fails at once, like an unreachable host; a silent link swallows every message
/// and never answers, like a firewall DROP rule (the case where callers must rely on their
/// own timeouts).
#[derive(Debug, Default)]
pub struct NetworkFaults {
    cut: RwLock<HashSet<(u64, u64)>>,
    silent: RwLock<HashSet<(u64, u64)>>,
    /// A listener nobody accepts on: connections to it open and then hear nothing.
    tarpit: Mutex<Option<std::net::TcpListener>>,
}

impl NetworkFaults {
    /// Cuts `a → b` and `b → a`.
    pub fn cut(&self, a: u64, b: u64) {
        let mut cut = self.cut.write();
        cut.insert((a, b));
        cut.insert((b, a));
    }

    /// Cuts one direction only.
    pub fn cut_one_way(&self, from: u64, to: u64) {
        self.cut.write().insert((from, to));
    }

    /// Makes `a ↔ b` silent: requests are sent and never answered.
    pub fn silence(&self, a: u64, b: u64) {
        let mut silent = self.silent.write();
        silent.insert((a, b));
        silent.insert((b, a));
    }

    pub fn heal(&self) {
        self.cut.write().clear();
        self.silent.write().clear();
    }

    pub fn is_cut(&self, from: u64, to: u64) -> bool {
        self.cut.read().contains(&(from, to))
    }

    /// The address of a silent link's far end, when `from → to` is silent.
    fn silent_endpoint(&self, from: u64, to: u64) -> Option<String> {
        if !self.silent.read().contains(&(from, to)) {
            return None;
        }
        let mut tarpit = self.tarpit.lock();
        if tarpit.is_none() {
            *tarpit = std::net::TcpListener::bind("127.0.0.1:0").ok();
        }
        let addr = tarpit.as_ref()?.local_addr().ok()?;
        Some(format!("http://{addr}"))
    }
}

/// The gRPC metadata key every peer request carries the sender's cluster ID in (etcd's
/// `X-Etcd-Cluster-ID` header). A member refuses requests from another cluster: a member
/// left over from an earlier cluster on a reused address, or one pointed at the wrong
/// `--initial-cluster`, would otherwise vote and append in a cluster it is not part of.
pub const CLUSTER_ID_METADATA: &str = "x-berth-cluster-id";

/// Stamps [`CLUSTER_ID_METADATA`] on every outgoing peer request.
#[derive(Clone)]
pub struct ClusterStamp {
    cluster_id: MetadataValue<tonic::metadata::Ascii>,
}

impl ClusterStamp {
    pub fn new(cluster_id: u64) -> ClusterStamp {
        let cluster_id = MetadataValue::try_from(format!("{cluster_id:x}")).expect("hex digits are valid metadata");
        ClusterStamp { cluster_id }
    }
}

impl Interceptor for ClusterStamp {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        request.metadata_mut().insert(CLUSTER_ID_METADATA, self.cluster_id.clone());
        Ok(request)
    }
}

/// A client for one peer, stamping this member's cluster ID on each request.
pub type PeerClient = RaftPeerClient<InterceptedService<Channel, ClusterStamp>>;

/// Whether a request from a peer belongs to `local_cluster`: `Err` with etcd's
/// "cluster ID mismatch" when its stamp names another cluster or it has none.
pub fn check_cluster_id(metadata: &tonic::metadata::MetadataMap, local_cluster: u64) -> Result<(), tonic::Status> {
    let stamped = metadata.get(CLUSTER_ID_METADATA).and_then(|v| v.to_str().ok());
    match stamped.map(|hex| u64::from_str_radix(hex, 16)) {
        Some(Ok(remote)) if remote == local_cluster => Ok(()),
        Some(Ok(remote)) => Err(tonic::Status::failed_precondition(format!(
            "cluster ID mismatch: this member belongs to cluster {local_cluster:x}, the request came from cluster {remote:x}"
        ))),
        Some(Err(_)) => Err(tonic::Status::failed_precondition(format!(
            "cluster ID mismatch: {CLUSTER_ID_METADATA} {:?} is not a hexadecimal cluster ID",
            stamped.unwrap_or_default()
        ))),
        None => Err(tonic::Status::failed_precondition(format!(
            "cluster ID mismatch: the request carries no {CLUSTER_ID_METADATA} (this member belongs to cluster {local_cluster:x})"
        ))),
    }
}

pub struct PeerClients {
    self_id: u64,
    stamp: ClusterStamp,
    channels: Mutex<HashMap<u64, (Vec<String>, Channel)>>,
    pub faults: Arc<NetworkFaults>,
    /// The member's peer certificate for `https://` peers.
    tls: Option<ClientTlsConfig>,
}

impl PeerClients {
    pub fn new(self_id: u64, cluster_id: u64, faults: Arc<NetworkFaults>, tls: Option<ClientTlsConfig>) -> PeerClients {
        PeerClients { self_id, stamp: ClusterStamp::new(cluster_id), channels: Mutex::new(HashMap::new()), faults, tls }
    }

    pub fn self_id(&self) -> u64 {
        self.self_id
    }

    /// A lazily-connecting channel to `target`, reused while its URLs do not change.
    fn channel(&self, target: u64, node: &PeerNode) -> Result<Channel> {
        let mut channels = self.channels.lock();
        if let Some((urls, ch)) = channels.get(&target) {
            if urls == &node.peer_urls {
                return Ok(ch.clone());
            }
        }
        let url = node.peer_urls.first().ok_or_else(|| StoreError::Peer {
            peer: format!("{target:x}"),
            message: "member has no peer URL".into(),
        })?;
        let ch = peer_endpoint(url, self.tls.as_ref())?.connect_lazy();
        channels.insert(target, (node.peer_urls.clone(), ch.clone()));
        Ok(ch)
    }

    /// A client for `target`, or an unreachable error if the link is cut.
    pub fn client(&self, target: u64, node: &PeerNode) -> Result<PeerClient> {
        if self.faults.is_cut(self.self_id, target) {
            return Err(StoreError::Peer { peer: format!("{target:x}"), message: "link cut (fault injection)".into() });
        }
        let channel = match self.faults.silent_endpoint(self.self_id, target) {
            Some(tarpit) => peer_endpoint(&tarpit, None)?.connect_lazy(),
            None => self.channel(target, node)?,
        };
        Ok(RaftPeerClient::with_interceptor(channel, self.stamp.clone())
            .max_decoding_message_size(MAX_PEER_MESSAGE)
            .max_encoding_message_size(MAX_PEER_MESSAGE))
    }
}

/// A tonic endpoint for a peer or client URL, with Berth's connection settings; an
/// `https://` URL is dialed with `tls` (the member's peer certificate).
pub fn peer_endpoint(url: &str, tls: Option<&ClientTlsConfig>) -> Result<Endpoint> {
    let mut endpoint =
        Endpoint::from_shared(url.to_string()).map_err(|e| StoreError::Config(format!("bad URL {url}: {e}")))?;
    if url.starts_with("https://") {
        let tls = tls.ok_or_else(|| StoreError::Config(format!("{url} is https but this member has no TLS")))?;
        endpoint = endpoint.tls_config(tls.clone()).map_err(|e| StoreError::Config(format!("TLS for {url}: {e}")))?;
    }
    Ok(endpoint
        .connect_timeout(Duration::from_secs(1))
        .tcp_nodelay(true)
        // Log batches and snapshot chunks are large: open wide HTTP/2 windows so a transfer
        // is not throttled by flow-control round trips.
        .initial_stream_window_size(4 << 20)
        .initial_connection_window_size(16 << 20)
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true))
}

/// True when a failed call certainly never reached the peer (nothing was sent), so it is
/// safe to retry even a non-idempotent request.
pub fn never_sent(status: &tonic::Status) -> bool {
    let text = format!("{status:?}");
    text.contains("tcp connect error") || text.contains("Connection refused") || text.contains("link cut")
}
