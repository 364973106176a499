//! The error a controller's sync returns when an API call failed ([`SyncError`]: the key
//! comes back with back-off), and helpers to build and inspect it.

/// A sync that failed on an API call: the key comes back with back-off.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct SyncError {
    pub what: String,
    #[source]
    pub source: kube::Error,
}

/// Wraps a `kube::Error` with what the controller was doing.
pub fn api_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> SyncError {
    let what = what.into();
    move |source| SyncError { what, source }
}

/// Whether `e` is an API answer with this HTTP status.
pub fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}
