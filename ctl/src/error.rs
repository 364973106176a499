//! `CtlError`: every way a `berthctl` command fails, rendered the way kubectl renders it
//! (`Error from server (NotFound): deployments.apps "web" not found`, `error: …`), so
//! scripts and people that grep kubectl's wording keep working.

use std::fmt;

/// The one error type of the `berth-ctl` library.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// The API server answered with a `Status` failure.
    Server {
        /// `Status.reason` (`NotFound`, `AlreadyExists`, `Conflict`, `Invalid`, …); may be empty.
        reason: String,
        /// HTTP status code.
        code: u16,
        /// `Status.message`, already phrased by the server (`pods "x" not found`).
        message: String,
    },
    /// No server could be reached.
    Connect {
        /// The API server URL that was tried last.
        server: String,
        /// What went wrong (connection refused, timeout, …).
        detail: String,
    },
    /// Bad command-line input or a local precondition: printed as `error: …`.
    Usage(String),
    /// A resource type the server does not serve.
    UnknownResource(String),
    /// Reading or writing a local file.
    Io {
        /// What was being done, e.g. the file's path.
        context: String,
        source: std::io::Error,
    },
    /// A manifest or kubeconfig that does not parse.
    Parse {
        /// The file or input the error is in.
        context: String,
        /// The parser's message, including line and column when it knows them.
        message: String,
    },
    /// The command finished its work but must exit non-zero without printing more
    /// (it already explained itself, e.g. `rollout status` on a failed rollout).
    Exit(i32),
}

impl fmt::Display for CtlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CtlError::Server { reason, message, .. } if reason.is_empty() => write!(f, "Error from server: {message}"),
            CtlError::Server { reason, message, .. } => write!(f, "Error from server ({reason}): {message}"),
            CtlError::Connect { server, detail } => {
                let host = url::Url::parse(server)
                    .ok()
                    .and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port_or_known_default()?)))
                    .unwrap_or_else(|| server.clone());
                if detail.contains("refused") {
                    write!(
                        f,
                        "The connection to the server {host} was refused - did you specify the right host or port?"
                    )
                } else {
                    write!(f, "Unable to connect to the server: {detail}")
                }
            }
            CtlError::Usage(message) => write!(f, "error: {message}"),
            CtlError::UnknownResource(name) => write!(f, "error: the server doesn't have a resource type \"{name}\""),
            CtlError::Io { context, source } => write!(f, "error: {context}: {source}"),
            CtlError::Parse { context, message } => write!(f, "error: error parsing {context}: {message}"),
            CtlError::Exit(code) => write!(f, "exit status {code}"),
        }
    }
}

impl CtlError {
    /// A usage error with kubectl's `error: ` prefix added on display.
    pub fn usage(message: impl Into<String>) -> CtlError {
        CtlError::Usage(message.into())
    }

    /// The process exit code for this error (kubectl exits 1 on every error).
    pub fn exit_code(&self) -> i32 {
        match self {
            CtlError::Exit(code) => *code,
            _ => 1,
        }
    }

    /// True for a server `NotFound` (404).
    pub fn is_not_found(&self) -> bool {
        matches!(self, CtlError::Server { code: 404, .. })
    }

    /// True for a server `Conflict` (409), the optimistic-concurrency retry signal.
    pub fn is_conflict(&self) -> bool {
        matches!(self, CtlError::Server { code: 409, .. })
    }

    /// True when the server could not be reached (worth failing over to another server).
    pub fn is_connect(&self) -> bool {
        matches!(self, CtlError::Connect { .. })
    }

    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> CtlError {
        CtlError::Io { context: context.into(), source }
    }

    /// A client-side NotFound phrased as the server phrases it (`pods "x" not found`).
    pub fn not_found(qualified_resource: &str, name: &str) -> CtlError {
        CtlError::Server {
            reason: "NotFound".into(),
            code: 404,
            message: format!("{qualified_resource} \"{name}\" not found"),
        }
    }

    /// Converts a kube-rs error; `server` names the API server for connection errors.
    pub fn from_kube(err: kube::Error, server: &str) -> CtlError {
        match err {
            kube::Error::Api(status) => {
                CtlError::Server { reason: status.reason.clone(), code: status.code, message: status.message.clone() }
            }
            kube::Error::HyperError(e) => CtlError::Connect { server: server.into(), detail: chain(&e) },
            kube::Error::Service(e) => CtlError::Connect { server: server.into(), detail: chain(e.as_ref()) },
            other => CtlError::Usage(other.to_string()),
        }
    }
}

/// An error with its sources joined, so "connection refused" deep in the chain is visible.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    parts.dedup();
    parts.join(": ")
}

/// The crate's result type.
pub type Result<T, E = CtlError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_read_like_kubectl() {
        let e = CtlError::not_found("deployments.apps", "x");
        assert_eq!(e.to_string(), "Error from server (NotFound): deployments.apps \"x\" not found");
        let e = CtlError::Server { reason: String::new(), code: 500, message: "boom".into() };
        assert_eq!(e.to_string(), "Error from server: boom");
        assert_eq!(
            CtlError::UnknownResource("foo".into()).to_string(),
            "error: the server doesn't have a resource type \"foo\""
        );
    }

    #[test]
    fn refused_connections_name_the_host() {
        let e = CtlError::Connect {
            server: "http://127.0.0.1:6443".into(),
            detail: "tcp connect error: Connection refused".into(),
        };
        assert_eq!(
            e.to_string(),
            "The connection to the server 127.0.0.1:6443 was refused - did you specify the right host or port?"
        );
    }
}
