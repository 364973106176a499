//! Writes through the leader, and the linearizable read barrier.
//!
//! * [`StoreNode::propose`]: a replicated request goes to `client_write` on the leader —
//!   this member, or the leader over the peer port. A request is retried (within the
//!   request timeout) only when it certainly was not proposed: the leader said "not
//!   leader", openraft refused it before appending it (`ForwardToLeader` with the entry never
//!   handed to the log store), or the peer was never reached. An entry that was appended and
//!   then truncated from this member's log may still commit from another member's copy.
//!   Anything else that fails after sending is indeterminate and reported as a timeout,
//!   never silently retried (a retry could apply a txn twice).
//! * Client KV writes go through a [`Batcher`]: openraft 0.9 makes the log append of each
//!   entry wait for its fsync before the next append, so one request per entry would cap
//!   throughput at one fsync per request. The batcher proposes everything queued as one
//!   entry (applied request by request, each with its own revision); followers forward
//!   their batches to the leader, whose batcher merges them with its own queue.
//! * [`StoreNode::barrier`]: a read index. Concurrent readers share one confirmation round
//!   (one heartbeat quorum on the leader), then each waits until this member has applied up
//!   to the index. A round only serves readers that arrived before it started.

use std::future::Future;
use std::sync::Weak;
use std::time::Duration;

use berth_proto::berthraftpb::apply_result::Result as ApplyKind;
use berth_proto::berthraftpb::internal_request::Request;
use berth_proto::berthraftpb::propose_outcome::Outcome as WireOutcome;
use berth_proto::berthraftpb::{
    ApplyError, ApplyResult, InternalRequest, ProposeBatchRequest, ProposeOutcome, ReadIndexRequest, RequestBatch,
};
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use prost::Message;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::StoreNode;
use crate::error::{Result, StoreError};
use crate::raft::peers::{never_sent, PeerClient};
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
    pub(crate) async fn on_leader<T, L, LF, R, RF>(&self, local: L, remote: R) -> Result<T>
    where
        L: FnMut(Instant) -> LF,
        LF: Future<Output = Attempt<T>>,
        R: FnMut(PeerClient) -> RF,
        RF: Future<Output = std::result::Result<T, tonic::Status>>,
    {
        self.on_leader_with(local, remote, None).await
    }

    /// [`on_leader`](Self::on_leader), and with `attempt_timeout` (for operations without
    /// side effects, like the read index) a remote attempt that gets no answer in that time
    /// is retried against whoever leads then, instead of holding the caller until the
    /// request deadline. A partitioned old leader otherwise stalls every read on this member
    /// for the whole request timeout (the Jepsen harness saw seconds of failed reads after a
    /// new leader was already elected).
    async fn on_leader_with<T, L, LF, R, RF>(
        &self,
        mut local: L,
        mut remote: R,
        attempt_timeout: Option<Duration>,
    ) -> Result<T>
    where
        L: FnMut(Instant) -> LF,
        LF: Future<Output = Attempt<T>>,
        R: FnMut(PeerClient) -> RF,
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
                match self.peer_node(leader).map(|node| self.peers.client(leader, &node)) {
                    Some(Ok(client)) => {
                        let attempt_deadline = attempt_timeout.map_or(deadline, |t| deadline.min(Instant::now() + t));
                        match tokio::time::timeout_at(attempt_deadline, remote(client)).await {
                            Err(_) if attempt_timeout.is_some() => Attempt::Retry(StoreError::Timeout),
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
        crate::request::admit(&req)?;
        let result = if is_batchable(&req) { self.propose_batched(req).await } else { self.propose_alone(req).await };
        let kind = match result {
            Ok(apply) => apply.result.ok_or_else(|| StoreError::Raft("empty apply result".into())),
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

    /// A request that must be an entry of its own (leases, compaction, members).
    async fn propose_alone(&self, req: InternalRequest) -> Result<ApplyResult> {
        self.on_leader(
            |deadline| self.propose_here(req.clone(), deadline),
            |mut client| {
                let req = req.clone();
                async move { client.propose(req).await.map(|r| r.into_inner()) }
            },
        )
        .await
    }

    /// A client KV write, through the batcher; retried while certainly not proposed.
    async fn propose_batched(&self, req: InternalRequest) -> Result<ApplyResult> {
        let deadline = self.deadline();
        loop {
            match self.batcher.submit(req.clone()).await {
                Outcome::Applied(r) => return Ok(r),
                Outcome::Indeterminate(e) => return Err(e),
                Outcome::NotProposed(e) => {
                    if Instant::now() >= deadline {
                        return Err(if e == StoreError::NoLeader { e } else { StoreError::Timeout });
                    }
                    tokio::time::sleep(RETRY_PAUSE).await;
                    self.wait_for_leader(deadline).await?;
                }
            }
        }
    }

    /// Proposes a batch from the batcher: as one entry here if this member leads, else as
    /// one RPC to the leader. Every request gets an outcome.
    async fn submit_batch(&self, requests: Vec<InternalRequest>) -> Vec<Outcome> {
        let n = requests.len();
        let deadline = self.deadline();
        let Some(leader) = self.leader() else {
            return vec![Outcome::NotProposed(StoreError::NoLeader); n];
        };
        if leader == self.id {
            let single = n == 1;
            let entry = if single {
                requests.into_iter().next().expect("one request")
            } else {
                InternalRequest { request: Some(Request::Batch(RequestBatch { requests })) }
            };
            return match self.propose_here(entry, deadline).await {
                Attempt::Done(result) if single => vec![Outcome::Applied(result)],
                Attempt::Done(ApplyResult { result: Some(ApplyKind::Batch(b)) }) if b.results.len() == n => {
                    b.results.into_iter().map(Outcome::Applied).collect()
                }
                // The entry as a whole was refused by apply (see `raft::state_machine`): a
                // deterministic outcome, the same for each of its requests.
                Attempt::Done(ApplyResult { result: Some(ApplyKind::Error(e)) }) => {
                    vec![Outcome::Applied(ApplyResult { result: Some(ApplyKind::Error(e)) }); n]
                }
                Attempt::Done(other) => {
                    vec![Outcome::Indeterminate(StoreError::Raft(format!("unexpected batch result {other:?}"))); n]
                }
                Attempt::Retry(e) => vec![Outcome::NotProposed(e); n],
                Attempt::Failed(e) => vec![Outcome::Indeterminate(e); n],
            };
        }
        let client = match self.peer_node(leader).map(|node| self.peers.client(leader, &node)) {
            Some(Ok(c)) => c,
            Some(Err(e)) => return vec![Outcome::NotProposed(e); n],
            None => return vec![Outcome::NotProposed(StoreError::NoLeader); n],
        };
        let mut client = client;
        let sent = tokio::time::timeout_at(deadline, client.propose_batch(ProposeBatchRequest { requests })).await;
        match sent {
            Ok(Ok(resp)) => {
                let outcomes = resp.into_inner().outcomes;
                if outcomes.len() != n {
                    return vec![
                        Outcome::Indeterminate(StoreError::Raft(
                            "leader answered a different batch size".into()
                        ));
                        n
                    ];
                }
                outcomes.into_iter().map(Outcome::from_wire).collect()
            }
            Ok(Err(status)) => match classify_remote::<()>(status) {
                Attempt::Retry(e) => vec![Outcome::NotProposed(e); n],
                Attempt::Failed(e) => vec![Outcome::Indeterminate(e); n],
                Attempt::Done(()) => unreachable!("classify_remote never succeeds"),
            },
            Err(_) => vec![Outcome::Indeterminate(StoreError::Timeout); n],
        }
    }

    /// Serves a follower's forwarded batch (leader only): its requests join this member's
    /// batcher queue, so they share entries with local requests.
    pub async fn leader_propose_batch(&self, requests: Vec<InternalRequest>) -> Result<Vec<ProposeOutcome>> {
        if !self.is_leader() {
            return Err(StoreError::NotLeader);
        }
        // Checked again here: the follower may run an older version with other limits.
        let outcomes = futures::future::join_all(requests.into_iter().map(|r| async move {
            match crate::request::admit(&r) {
                Ok(()) => self.batcher.submit(r).await,
                Err(e) => Outcome::Applied(ApplyResult { result: Some(ApplyKind::Error(apply_error(&e))) }),
            }
        }))
        .await;
        Ok(outcomes.into_iter().map(Outcome::into_wire).collect())
    }

    /// `client_write` on this member (which believes it leads).
    pub(crate) async fn propose_here(
        &self,
        req: InternalRequest,
        deadline: Instant,
    ) -> Attempt<berth_proto::berthraftpb::ApplyResult> {
        let (entry, mark) = StoreRequest::proposal(&req);
        match tokio::time::timeout_at(deadline, self.raft.client_write(entry)).await {
            Err(_) => Attempt::Failed(StoreError::Timeout),
            Ok(Ok(resp)) => Attempt::Done(resp.data.0),
            // openraft answers `ForwardToLeader` in two cases it does not tell apart:
            // * this member was no longer leader when the request arrived: refused before it
            //   was appended, so it certainly has no effect — retry (maybe elsewhere);
            // * the entry was appended, then truncated from this member's log by a newer
            //   leader. That proves only that *this copy* is gone: the entry may have reached
            //   other members first, and one of them can still be elected and commit it (with
            //   five members: on this member and one follower, truncated here by a leader that
            //   the other three elected; that follower wins the next election with their
            //   votes). A retry would then apply the request twice — a guarded txn once, then
            //   "guard failed" for the write that took effect. Indeterminate, like etcd's
            //   "leader changed".
            // The mark, set by the log store when it receives the entry, decides which.
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) if !mark.appended() => {
                Attempt::Retry(StoreError::NoLeader)
            }
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => Attempt::Failed(StoreError::Timeout),
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
        let waited = tokio::time::timeout_at(deadline, applied.wait_for(|a| *a >= index)).await.map(|r| r.map(|_| ()));
        match waited {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(StoreError::Stopped),
            Err(_) => Err(StoreError::Timeout),
        }
    }

    /// One read-index confirmation: the leader's commit point, confirmed by a quorum.
    pub(crate) async fn confirm_read_index(&self) -> Result<u64> {
        self.on_leader_with(
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
            |mut client| async move { client.read_index(ReadIndexRequest {}).await.map(|r| r.into_inner().read_index) },
            Some(self.config.election_timeout),
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
        return Attempt::Retry(StoreError::Peer { peer: String::new(), message: status.message().to_string() });
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

/// Client KV writes may share an entry; everything else is proposed alone.
fn is_batchable(req: &InternalRequest) -> bool {
    matches!(req.request, Some(Request::Put(_) | Request::DeleteRange(_) | Request::Txn(_)))
}

/// A deterministic rejection in its wire form.
pub(crate) fn apply_error(e: &StoreError) -> ApplyError {
    ApplyError { code: e.code() as i32, message: e.to_string() }
}

/// What became of a request handed to the batcher.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    Applied(ApplyResult),
    /// Certainly not proposed; safe to retry.
    NotProposed(StoreError),
    /// Maybe committed, maybe not.
    Indeterminate(StoreError),
}

impl Outcome {
    fn into_wire(self) -> ProposeOutcome {
        let err = |e: StoreError| apply_error(&e);
        let outcome = match self {
            Outcome::Applied(r) => WireOutcome::Applied(r),
            Outcome::NotProposed(e) => WireOutcome::NotProposed(err(e)),
            Outcome::Indeterminate(e) => WireOutcome::Indeterminate(err(e)),
        };
        ProposeOutcome { outcome: Some(outcome) }
    }

    fn from_wire(w: ProposeOutcome) -> Outcome {
        match w.outcome {
            Some(WireOutcome::Applied(r)) => Outcome::Applied(r),
            Some(WireOutcome::NotProposed(e)) => {
                Outcome::NotProposed(StoreError::from_code_message(e.code, &e.message))
            }
            Some(WireOutcome::Indeterminate(e)) => {
                Outcome::Indeterminate(StoreError::from_code_message(e.code, &e.message))
            }
            None => Outcome::Indeterminate(StoreError::Raft("empty outcome".into())),
        }
    }
}

/// Requests merged into one entry at most.
const MAX_BATCH_REQUESTS: usize = 2048;
/// Encoded bytes merged into one entry at most (a single request may exceed it alone, up to
/// 1.5 MiB). An entry is replicated in one append that must complete within a heartbeat
/// interval (see `raft::network`), so entries stay small.
const MAX_BATCH_BYTES: usize = 1 << 20;
/// Batches proposed and not yet answered, per member. More than one keeps the leader's log
/// busy while earlier batches replicate and apply; few enough that requests arriving
/// meanwhile accumulate into large batches.
const MAX_BATCHES_IN_FLIGHT: usize = 3;

struct Pending {
    req: InternalRequest,
    bytes: usize,
    reply: oneshot::Sender<Outcome>,
}

/// Merges concurrent client writes into batches (see the module docs).
pub(crate) struct Batcher {
    tx: mpsc::UnboundedSender<Pending>,
}

impl Batcher {
    pub(crate) fn spawn(node: Weak<StoreNode>) -> Batcher {
        let (tx, mut rx) = mpsc::unbounded_channel::<Pending>();
        tokio::spawn(async move {
            let mut in_flight = FuturesUnordered::new();
            loop {
                tokio::select! {
                    next = rx.recv(), if in_flight.len() < MAX_BATCHES_IN_FLIGHT => {
                        let Some(first) = next else { break };
                        let mut bytes = first.bytes;
                        let mut batch = vec![first];
                        while batch.len() < MAX_BATCH_REQUESTS && bytes < MAX_BATCH_BYTES {
                            match rx.try_recv() {
                                Ok(p) => {
                                    bytes += p.bytes;
                                    batch.push(p);
                                }
                                Err(_) => break,
                            }
                        }
                        let Some(n) = node.upgrade() else { break };
                        in_flight.push(async move {
                            let (requests, replies): (Vec<_>, Vec<_>) = batch.into_iter().map(|p| (p.req, p.reply)).unzip();
                            let outcomes = n.submit_batch(requests).await;
                            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                                let _ = reply.send(outcome);
                            }
                        });
                    }
                    Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
                }
            }
        });
        Batcher { tx }
    }

    pub(crate) async fn submit(&self, req: InternalRequest) -> Outcome {
        let (reply, rx) = oneshot::channel();
        let bytes = req.encoded_len();
        if self.tx.send(Pending { req, bytes, reply }).is_err() {
            return Outcome::NotProposed(StoreError::Stopped);
        }
        rx.await.unwrap_or(Outcome::Indeterminate(StoreError::Stopped))
    }
}
