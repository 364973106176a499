//! Writes through the leader, and the linearizable read barrier.
//!
//! * [`StoreNode::propose`]: a replicated request goes to `client_write` on the leader —
//!   this member, or the leader over the peer port. A request is retried (within the
//!   request timeout) only when it certainly was not proposed: the leader said "not
//!   leader", openraft truncated it (`ForwardToLeader`), or the peer was never reached.
//!   Anything else that fails after sending is indeterminate and reported as a timeout,
//!   never silently retried (a retry could apply a txn twice).
//! * [`StoreNode::barrier`]: a read index. Concurrent readers share one confirmation round
//!   (one heartbeat quorum on the leader), then each waits until this member has applied up
//!   to the index. A round only serves readers that arrived before it started.

use std::future::Future;
use std::sync::Weak;
use std::time::Duration;

use berth_proto::berthraftpb::apply_result::Result as ApplyKind;
use berth_proto::berthraftpb::raft_peer_client::RaftPeerClient;
use berth_proto::berthraftpb::{InternalRequest, ReadIndexRequest};
use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use prost::Message;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tonic::transport::Channel;

use super::StoreNode;
use crate::error::{Result, StoreError};
use crate::mvcc::MAX_REQUEST_BYTES;
use crate::peers::never_sent;
use crate::raft::StoreRequest;

/// Pause between attempts while leadership settles.
const RETRY_PAUSE: Duration = Duration::from_millis(20);

/// The outcome of one attempt at something that must happen on the leader.
pub(crate) enum Attempt<T> {
    Done(T),
    /// Certainly had no effect; try again (maybe elsewhere).
    Retry(StoreError),
    Failed(StoreError),
}

impl StoreNode {
    /// Waits (until `deadline`) for a known leader.
    pub(crate) async fn wait_for_leader(&self, deadline: Instant) -> Result<u64> {
        let mut metrics = self.raft.metrics();
        loop {
            if let Some(leader) = metrics.borrow_and_update().current_leader {
                return Ok(leader);
            }
            if self.shutdown.is_cancelled() {
                return Err(StoreError::Stopped);
            }
            match tokio::time::timeout_at(deadline, metrics.changed()).await {
                Err(_) => return Err(StoreError::NoLeader),
                Ok(Err(_)) => return Err(StoreError::Stopped),
                Ok(Ok(())) => {}
            }
        }
    }

    fn deadline(&self) -> Instant {
        Instant::now() + self.config.request_timeout
    }

    /// Runs an operation on the leader: `local` when this member leads, otherwise `remote`
    /// against the leader's peer client. Retries while the outcome says it had no effect.
    pub(crate) async fn on_leader<T, L, LF, R, RF>(&self, mut local: L, mut remote: R) -> Result<T>
    where
        L: FnMut(Instant) -> LF,
        LF: Future<Output = Attempt<T>>,
        R: FnMut(RaftPeerClient<Channel>) -> RF,
        RF: Future<Output = std::result::Result<T, tonic::Status>>,
    {
        let deadline = self.deadline();
        let mut last = StoreError::NoLeader;
        loop {
            if Instant::now() >= deadline {
                return Err(match last {
                    StoreError::NoLeader => StoreError::NoLeader,
                    _ => StoreError::Timeout,
                });
            }
            let leader = self.wait_for_leader(deadline).await?;
            let attempt = if leader == self.id {
                local(deadline).await
            } else {
                match self
                    .peer_node(leader)
                    .map(|node| self.peers.client(leader, &node))
                {
                    Some(Ok(client)) => {
                        match tokio::time::timeout_at(deadline, remote(client)).await {
                            Err(_) => Attempt::Failed(StoreError::Timeout),
                            Ok(Ok(v)) => Attempt::Done(v),
                            Ok(Err(status)) => classify_remote(status),
                        }
                    }
                    Some(Err(e)) => Attempt::Retry(e),
                    None => Attempt::Retry(StoreError::NoLeader),
                }
            };
            match attempt {
                Attempt::Done(v) => return Ok(v),
                Attempt::Failed(e) => return Err(e),
                Attempt::Retry(e) => {
                    last = e;
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
            }
        }
    }

    /// Replicates `req` and returns the state machine's answer (rejections as errors).
    pub async fn propose(&self, req: InternalRequest) -> Result<ApplyKind> {
        if req.encoded_len() > MAX_REQUEST_BYTES {
            return Err(StoreError::RequestTooLarge);
        }
        let result = self
            .on_leader(
                |deadline| self.propose_here(req.clone(), deadline),
                |mut client| {
                    let req = req.clone();
                    async move { client.propose(req).await.map(|r| r.into_inner()) }
                },
            )
            .await;
        let kind = match result {
            Ok(apply) => apply
                .result
                .ok_or_else(|| StoreError::Raft("empty apply result".into())),
            Err(e) => Err(e),
        };
        if kind.as_ref().is_err_and(|e| !e.is_deterministic()) {
            self.shared.metrics.proposals_failed.inc();
        }
        match kind? {
            ApplyKind::Error(e) => Err(StoreError::from_code_message(e.code, &e.message)),
            other => Ok(other),
        }
    }

    /// `client_write` on this member (which believes it leads).
    pub(crate) async fn propose_here(
        &self,
        req: InternalRequest,
        deadline: Instant,
    ) -> Attempt<berth_proto::berthraftpb::ApplyResult> {
        match tokio::time::timeout_at(deadline, self.raft.client_write(StoreRequest(req))).await {
            Err(_) => Attempt::Failed(StoreError::Timeout),
            Ok(Ok(resp)) => Attempt::Done(resp.data.0),
            // Not leader, or the entry was truncated by a new leader: it never committed.
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => {
                Attempt::Retry(StoreError::NoLeader)
            }
            Ok(Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e)))) => {
                Attempt::Failed(StoreError::Raft(e.to_string()))
            }
            Ok(Err(RaftError::Fatal(_))) => Attempt::Failed(StoreError::Stopped),
        }
    }

    /// A linearizable read point: returns once this member has applied everything committed
    /// before the call.
    pub async fn barrier(&self) -> Result<()> {
        let deadline = self.deadline();
        let index = self.read_index.get(deadline).await?;
        self.wait_applied(index, deadline).await
    }

    /// Waits until the local state machine has applied `index`.
    pub(crate) async fn wait_applied(&self, index: u64, deadline: Instant) -> Result<()> {
        let mut applied = self.shared.applied.subscribe();
        let waited = tokio::time::timeout_at(deadline, applied.wait_for(|a| *a >= index))
            .await
            .map(|r| r.map(|_| ()));
        match waited {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(StoreError::Stopped),
            Err(_) => Err(StoreError::Timeout),
        }
    }

    /// One read-index confirmation: the leader's commit point, confirmed by a quorum.
    pub(crate) async fn confirm_read_index(&self) -> Result<u64> {
        self.on_leader(
            |_deadline| async move {
                match self.raft.get_read_log_id().await {
                    Ok((read, _)) => Attempt::Done(read.map_or(0, |l| l.index)),
                    Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(_))) => {
                        Attempt::Retry(StoreError::NoLeader)
                    }
                    Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(e))) => {
                        Attempt::Retry(StoreError::Raft(e.to_string()))
                    }
                    Err(RaftError::Fatal(_)) => Attempt::Failed(StoreError::Stopped),
                }
            },
            |mut client| async move {
                client
                    .read_index(ReadIndexRequest {})
                    .await
                    .map(|r| r.into_inner().read_index)
            },
        )
        .await
    }

    /// Serves a follower's read-index request (leader only).
    pub async fn leader_read_index(&self) -> Result<u64> {
        if !self.is_leader() {
            return Err(StoreError::NotLeader);
        }
        self.read_index.get(self.deadline()).await
    }
}

/// Maps a peer's error: "not leader" and unsent calls are retryable; etcd errors are final;
/// anything else happened after sending and is indeterminate.
fn classify_remote<T>(status: tonic::Status) -> Attempt<T> {
    if never_sent(&status) {
        return Attempt::Retry(StoreError::Peer {
            peer: String::new(),
            message: status.message().to_string(),
        });
    }
    let err = StoreError::from(status);
    match err {
        StoreError::NotLeader | StoreError::NoLeader => Attempt::Retry(err),
        StoreError::Peer { .. } => Attempt::Failed(StoreError::Timeout),
        other => Attempt::Failed(other),
    }
}

type Waiter = oneshot::Sender<Result<u64>>;

/// Coalesces concurrent read-index requests into shared confirmation rounds.
pub(crate) struct ReadIndexQueue {
    tx: mpsc::UnboundedSender<Waiter>,
}

impl ReadIndexQueue {
    pub(crate) fn spawn(node: Weak<StoreNode>) -> ReadIndexQueue {
        let (tx, mut rx) = mpsc::unbounded_channel::<Waiter>();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                // Everyone queued before this round starts shares it.
                let mut round = vec![first];
                while let Ok(w) = rx.try_recv() {
                    round.push(w);
                }
                let Some(n) = node.upgrade() else { return };
                let result = n.confirm_read_index().await;
                drop(n);
                for w in round {
                    let _ = w.send(result.clone());
                }
            }
        });
        ReadIndexQueue { tx }
    }

    pub(crate) async fn get(&self, deadline: Instant) -> Result<u64> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(tx).map_err(|_| StoreError::Stopped)?;
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(StoreError::Stopped),
            Err(_) => Err(StoreError::Timeout),
        }
    }
}
