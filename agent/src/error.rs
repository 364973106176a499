//! The crate's one error type.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A flag or configuration value is unusable; `flag` names it (`--labels`).
    #[error("{flag}: {message}")]
    Config { flag: &'static str, message: String },
    /// An API call failed; `what` says which (`registering node n1`).
    #[error("{what}: {source}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A socket operation outside any one file (`what` says which).
    #[error("{what}: {source}")]
    Net {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("binding the kubelet endpoint on port {port}: {source}")]
    Bind {
        port: u16,
        #[source]
        source: std::io::Error,
    },
    /// The runtime could not do what was asked (start a container, find its logs).
    #[error("{0}")]
    Runtime(String),
    #[error("{what} timed out")]
    Timeout { what: String },
}

impl AgentError {
    pub fn api(what: impl Into<String>, source: kube::Error) -> AgentError {
        AgentError::Api { what: what.into(), source }
    }

    pub fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> AgentError {
        AgentError::Io { what, path: path.into(), source }
    }

    /// Whether the API answered 404.
    pub fn is_not_found(&self) -> bool {
        matches!(self, AgentError::Api { source: kube::Error::Api(s), .. } if s.code == 404)
    }
}

pub type Result<T, E = AgentError> = std::result::Result<T, E>;
