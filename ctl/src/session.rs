//! `Session`: one command's connection to the cluster. Resolves the [`Target`] lazily (so
//! commands that never talk to a server, like `up` or `completion`, work without a
//! kubeconfig), builds the kube-rs client for the current API server, caches discovery,
//! and fails over to the next server of an HA cluster when the current one is unreachable.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{self, GlobalArgs, Target};
use crate::error::{CtlError, Result};
use crate::resources::Resolver;

/// How long a failover probe waits for one server's `/readyz`.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Per-command connection state.
pub struct Session {
    /// The global flags the command was started with.
    pub global: GlobalArgs,
    target: Option<Target>,
    client: Option<kube::Client>,
    current: usize,
    resolver: Option<Arc<Resolver>>,
}

impl Session {
    /// A session for these flags; nothing is read or dialled yet.
    pub fn new(global: GlobalArgs) -> Session {
        Session { global, target: None, client: None, current: 0, resolver: None }
    }

    /// The resolved kubeconfig target.
    pub fn target(&mut self) -> Result<&Target> {
        if self.target.is_none() {
            self.target = Some(config::resolve(&self.global)?);
        }
        Ok(self.target.as_ref().expect("just resolved"))
    }

    /// The namespace for namespaced requests (`-n`, the context's, or `default`).
    pub fn namespace(&mut self) -> Result<String> {
        Ok(self.target()?.namespace.clone())
    }

    /// True when `-n` was given explicitly (some commands then refuse `-A`).
    pub fn namespace_flag(&self) -> Option<&str> {
        self.global.namespace.as_deref()
    }

    /// The per-request timeout from `--request-timeout` (None = no limit).
    pub fn request_timeout(&self) -> Result<Option<Duration>> {
        let d = parse_duration(&self.global.request_timeout)
            .ok_or_else(|| CtlError::usage(format!("invalid --request-timeout {:?}", self.global.request_timeout)))?;
        Ok((!d.is_zero()).then_some(d))
    }

    /// The URL of the API server currently in use.
    pub fn server_url(&mut self) -> Result<String> {
        let current = self.current;
        let target = self.target()?;
        Ok(target.api_servers[current % target.api_servers.len()].clone())
    }

    /// The kube-rs client for the current API server.
    pub async fn client(&mut self) -> Result<kube::Client> {
        if let Some(client) = &self.client {
            return Ok(client.clone());
        }
        let timeout = self.request_timeout()?;
        let current = self.current;
        let config = self.target()?.kube_config(current, timeout).await?;
        let client =
            kube::Client::try_from(config).map_err(|e| CtlError::usage(format!("building the client: {e}")))?;
        self.client = Some(client.clone());
        Ok(client)
    }

    /// Converts a kube-rs error, naming the current server for connection failures.
    pub fn error(&mut self, err: kube::Error) -> CtlError {
        let server = self.server_url().unwrap_or_default();
        CtlError::from_kube(err, &server)
    }

    /// Moves to the next API server that answers `/readyz`, trying each other server once.
    /// Returns the connection error of the last one when none answers.
    pub async fn failover(&mut self) -> Result<()> {
        let count = self.target()?.api_servers.len();
        let mut last = None;
        for step in 1..=count {
            let index = (self.current + step) % count;
            let url = self.target()?.api_servers[index].clone();
            let config = self.target()?.kube_config(index, Some(PROBE_TIMEOUT)).await?;
            let client = kube::Client::try_from(config).map_err(|e| CtlError::usage(e.to_string()))?;
            let probe = http::Request::get("/readyz").body(Vec::new()).expect("static request");
            match tokio::time::timeout(PROBE_TIMEOUT, client.request_text(probe)).await {
                Ok(Ok(_)) => {
                    tracing::debug!(server = %url, "failed over");
                    self.current = index;
                    self.client = None;
                    return Ok(());
                }
                Ok(Err(e)) => last = Some(CtlError::from_kube(e, &url)),
                Err(_) => last = Some(CtlError::Connect { server: url, detail: "timed out".into() }),
            }
        }
        Err(last.unwrap_or(CtlError::Connect { server: self.server_url()?, detail: "no API server".into() }))
    }

    /// Runs `op` against the current server; when the server cannot be reached, fails over
    /// to the others (each tried once) and runs it again there.
    pub async fn call<T, F, Fut>(&mut self, mut op: F) -> Result<T>
    where
        F: FnMut(kube::Client) -> Fut,
        Fut: Future<Output = std::result::Result<T, kube::Error>>,
    {
        let count = self.target()?.api_servers.len();
        let mut attempt = 0;
        loop {
            let client = self.client().await?;
            match op(client).await {
                Ok(v) => return Ok(v),
                Err(e) => {
                    let err = self.error(e);
                    attempt += 1;
                    if !err.is_connect() || attempt >= count || self.failover().await.is_err() {
                        return Err(err);
                    }
                }
            }
        }
    }

    /// Adds every live server (from the servers' identity Leases) to the servers this
    /// session can fail over to. Long-running commands (`get -w`) call it first, so a
    /// kubeconfig naming a single server still fails over when that one dies. Best effort
    /// and bounded: on any failure the list stays as it was. `--server` pins one server.
    pub async fn learn_servers(&mut self) {
        use berth_proto::identity::{fresh_api_servers, identity_selector, IDENTITY_NAMESPACE};
        use k8s_openapi::api::coordination::v1::Lease;
        if self.global.server.is_some() || self.target().is_err() {
            return;
        }
        let params = kube::api::ListParams::default().labels(&identity_selector());
        let listed = tokio::time::timeout(
            PROBE_TIMEOUT * 2,
            self.call(|client| {
                let params = params.clone();
                async move { kube::Api::<Lease>::namespaced(client, IDENTITY_NAMESPACE).list(&params).await }
            }),
        )
        .await;
        let Ok(Ok(list)) = listed else { return };
        let target = self.target.as_mut().expect("resolved above");
        for url in fresh_api_servers(&list.items, k8s_openapi::jiff::Timestamp::now()) {
            if !target.api_servers.contains(&url) {
                tracing::debug!(server = %url, "learned a server");
                target.api_servers.push(url);
            }
        }
    }

    /// The server's resource types (discovery), fetched once per session.
    pub async fn resolver(&mut self) -> Result<Arc<Resolver>> {
        if let Some(r) = &self.resolver {
            return Ok(r.clone());
        }
        let resolver = Arc::new(self.call(|client| async move { Resolver::discover(&client).await }).await?);
        self.resolver = Some(resolver.clone());
        Ok(resolver)
    }
}

/// Parses kubectl-style durations: a bare number of seconds (`30`), else Go's
/// `time.ParseDuration` (`30s`, `5m`, `1m30s`, `250ms`), as kubectl reads its flags.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    berth_proto::model::duration::parse_go_duration(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_go() {
        assert_eq!(parse_duration("30"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration("5x"), None);
        assert_eq!(parse_duration(""), None);
    }
}
