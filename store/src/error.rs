//! The store's one error type.
//!
//! Variants fall in two families:
//! * *etcd semantic errors* (compacted, lease not found, …): deterministic outcomes that
//!   clients see as gRPC statuses with exactly etcd's codes and messages, because etcd
//!   client libraries match on those messages;
//! * *local failures* (engine, I/O, corruption, Raft): context-carrying, mapped to
//!   `Internal`/`Unavailable`/`DataLoss`.

use tonic::{Code, Status};

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum StoreError {
    // ---- etcd semantic errors ----
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    #[error("etcdserver: key not found")]
    KeyNotFound,
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    #[error("etcdserver: txn request is nested too deeply (at most {limit} levels)")]
    TxnTooDeep { limit: usize },
    #[error("etcdserver: txn response is too large (its ranges return over {limit} bytes)")]
    TxnResponseTooLarge { limit: usize },
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted { compact_revision: i64 },
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRevision,
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    #[error("etcdserver: member not found")]
    MemberNotFound,
    #[error("etcdserver: Peer URLs already exists")]
    PeerUrlExists,
    #[error("etcdserver: given member URLs are invalid")]
    MemberBadUrls,
    #[error("etcdserver: can only promote a learner member")]
    MemberNotLearner,
    #[error("etcdserver: can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    #[error("etcdserver: re-configuration failed due to not enough started members")]
    NotEnoughStartedMembers,
    #[error("etcdserver: no leader")]
    NoLeader,
    #[error("etcdserver: not leader")]
    NotLeader,
    #[error("etcdserver: request timed out")]
    Timeout,
    #[error("etcdserver: server stopped")]
    Stopped,
    #[error("etcdserver: bad leader transferee")]
    BadLeaderTransferee,
    #[error("etcdserver: {0}")]
    InvalidArgument(String),

    // ---- local failures ----
    #[error("storage engine failed ({context}): {message}")]
    Engine { context: &'static str, message: String },
    #[error("local data is corrupt ({what}): {detail}")]
    Corrupt { what: String, detail: String },
    #[error("{context}: {message}")]
    Io { context: String, message: String },
    #[error("raft: {0}")]
    Raft(String),
    #[error("peer {peer}: {message}")]
    Peer { peer: String, message: String },
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A rejection produced by another member's state machine or API, carried verbatim.
    #[error("{message}")]
    Remote { code: i32, message: String },
}

impl StoreError {
    pub fn io(context: impl Into<String>, err: impl std::fmt::Display) -> Self {
        StoreError::Io { context: context.into(), message: err.to_string() }
    }

    pub fn corrupt(what: impl Into<String>, detail: impl std::fmt::Display) -> Self {
        StoreError::Corrupt { what: what.into(), detail: detail.to_string() }
    }

    /// The gRPC code etcd uses for this error.
    pub fn code(&self) -> Code {
        use StoreError::*;
        match self {
            EmptyKey
            | KeyNotFound
            | TooManyOps
            | DuplicateKey
            | RequestTooLarge
            | TxnTooDeep { .. }
            | MemberBadUrls
            | InvalidArgument(_) => Code::InvalidArgument,
            TxnResponseTooLarge { .. } => Code::ResourceExhausted,
            Compacted { .. } | FutureRevision | LeaseTtlTooLarge => Code::OutOfRange,
            LeaseNotFound | MemberNotFound => Code::NotFound,
            LeaseExists
            | PeerUrlExists
            | MemberNotLearner
            | LearnerNotReady
            | NotEnoughStartedMembers
            | BadLeaderTransferee
            | NotLeader => Code::FailedPrecondition,
            NoLeader | Timeout | Stopped | Peer { .. } => Code::Unavailable,
            Corrupt { .. } => Code::DataLoss,
            Engine { .. } | Io { .. } | Raft(_) | Config(_) => Code::Internal,
            Remote { code, .. } => Code::from_i32(*code),
        }
    }

    /// True for outcomes that are part of the replicated history (the same on every replica).
    pub fn is_deterministic(&self) -> bool {
        !matches!(
            self,
            StoreError::Engine { .. }
                | StoreError::Corrupt { .. }
                | StoreError::Io { .. }
                | StoreError::Raft(_)
                | StoreError::Peer { .. }
                | StoreError::Config(_)
                | StoreError::NoLeader
                | StoreError::NotLeader
                | StoreError::Timeout
                | StoreError::Stopped
        )
    }

    /// Rebuilds a typed error from a (code, message) pair received from another member, so
    /// callers can match on variants whatever member produced the error.
    pub fn from_code_message(code: i32, message: &str) -> StoreError {
        use StoreError::*;
        let known = [
            EmptyKey,
            KeyNotFound,
            TooManyOps,
            DuplicateKey,
            RequestTooLarge,
            TxnTooDeep { limit: crate::request::MAX_TXN_DEPTH },
            TxnResponseTooLarge { limit: crate::mvcc::txn::MAX_TXN_RESPONSE_BYTES },
            FutureRevision,
            LeaseNotFound,
            LeaseExists,
            LeaseTtlTooLarge,
            MemberNotFound,
            PeerUrlExists,
            MemberBadUrls,
            MemberNotLearner,
            LearnerNotReady,
            NotEnoughStartedMembers,
            NoLeader,
            NotLeader,
            Timeout,
            Stopped,
            BadLeaderTransferee,
        ];
        if let Some(found) = known.into_iter().find(|e| e.to_string() == message) {
            return found;
        }
        if message == (Compacted { compact_revision: 0 }).to_string() {
            return Compacted { compact_revision: 0 };
        }
        Remote { code, message: message.to_string() }
    }
}

impl From<StoreError> for Status {
    fn from(err: StoreError) -> Status {
        Status::new(err.code(), err.to_string())
    }
}

/// Whether a stopped member's reason (`StoreNode::stopped_reason`) is corruption of its
/// local data — which a restart cannot repair, so the member stays up and says so — rather
/// than a failing disk or a full one, which a restart can get past.
pub fn is_corruption(reason: &str) -> bool {
    reason.contains("local data is corrupt")
}

impl From<Status> for StoreError {
    fn from(status: Status) -> StoreError {
        match status.code() {
            // Transport-level failures to reach a peer: not an answer from it.
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown
                if !status.message().starts_with("etcdserver:") =>
            {
                StoreError::Peer { peer: String::new(), message: status.message().to_string() }
            }
            code => StoreError::from_code_message(code as i32, status.message()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_errors_round_trip_through_status() {
        for err in [
            StoreError::FutureRevision,
            StoreError::LeaseNotFound,
            StoreError::LearnerNotReady,
            StoreError::Compacted { compact_revision: 0 },
        ] {
            let status: Status = err.clone().into();
            assert_eq!(StoreError::from(status), err);
        }
        assert!(is_corruption(&StoreError::corrupt("log entry 7", "checksum mismatch").to_string()));
        assert!(!is_corruption(
            &StoreError::Io { context: "writing".into(), message: "No space left on device".into() }.to_string()
        ));
        let status: Status = StoreError::Compacted { compact_revision: 7 }.into();
        assert_eq!(status.code(), Code::OutOfRange);
        assert_eq!(status.message(), "etcdserver: mvcc: required revision has been compacted");
    }
}
