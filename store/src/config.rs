//! Configuration of one store member, with etcd's flag semantics.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Result, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterState {
    /// Bootstrap a new cluster from `initial_cluster`.
    New,
    /// Join a cluster that already lists this member (added with `member add`).
    Existing,
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub name: String,
    pub data_dir: PathBuf,
    /// Client URLs advertised to the cluster (MemberList).
    pub advertise_client_urls: Vec<String>,
    /// Peer URLs advertised to the cluster.
    pub advertise_peer_urls: Vec<String>,
    /// `name → peer URLs` of the initial members.
    pub initial_cluster: Vec<(String, Vec<String>)>,
    pub initial_cluster_state: ClusterState,
    pub initial_cluster_token: String,
    /// Client URL of an existing member to join through (as a learner, then promoted).
    pub join: Option<String>,
    pub heartbeat_interval: Duration,
    pub election_timeout: Duration,
    /// Applied entries between snapshots (then the log is purged).
    pub snapshot_count: u64,
    /// Entries kept in the log after a snapshot, so slightly lagging followers catch up by
    /// log rather than snapshot (etcd: 5000).
    pub snapshot_catchup_entries: u64,
    pub watch_progress_notify_interval: Duration,
    /// Bound on any request waiting for the cluster (leader, commit, read index).
    pub request_timeout: Duration,
    /// `--auto-compaction-mode` / `--auto-compaction-retention`.
    pub auto_compaction: AutoCompaction,
    /// TLS on both ports (etcd's `--client-cert-auth` and `--peer-client-cert-auth` with
    /// `https://` URLs); None serves and dials plain `http://`.
    pub tls: Option<StoreTls>,
}

/// A member's TLS: what its two ports present and require, and what it presents when it
/// dials a peer (or the member it joins through).
#[derive(Clone)]
pub struct StoreTls {
    /// The client port's: refuses a handshake without a client certificate from the etcd CA.
    pub client_port: Arc<rustls::ServerConfig>,
    /// The peer port's: likewise, so only members (holding a peer certificate) talk Raft.
    pub peer_port: Arc<rustls::ServerConfig>,
    /// The member's peer certificate and the etcd CA, for dialing.
    pub dial: tonic::transport::ClientTlsConfig,
}

impl std::fmt::Debug for StoreTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreTls { .. }")
    }
}

impl StoreConfig {
    /// A single-member configuration for `name` with the given URLs (tests, local runs).
    pub fn single(name: &str, data_dir: PathBuf, client_url: &str, peer_url: &str) -> StoreConfig {
        StoreConfig {
            name: name.to_string(),
            data_dir,
            advertise_client_urls: vec![client_url.to_string()],
            advertise_peer_urls: vec![peer_url.to_string()],
            initial_cluster: vec![(name.to_string(), vec![peer_url.to_string()])],
            initial_cluster_state: ClusterState::New,
            initial_cluster_token: "berth-cluster".into(),
            join: None,
            heartbeat_interval: Duration::from_millis(100),
            election_timeout: Duration::from_millis(1000),
            snapshot_count: 100_000,
            snapshot_catchup_entries: 5000,
            watch_progress_notify_interval: Duration::from_secs(600),
            request_timeout: Duration::from_secs(7),
            auto_compaction: AutoCompaction::Disabled,
            tls: None,
        }
    }

    /// Checks the relations between settings (etcd's start-up checks).
    pub fn validate(&self) -> Result<()> {
        if self.name.is_empty() {
            return Err(StoreError::Config("--name must not be empty".into()));
        }
        if self.advertise_peer_urls.is_empty() {
            return Err(StoreError::Config("--initial-advertise-peer-urls must name at least one URL".into()));
        }
        if self.heartbeat_interval.is_zero() || self.election_timeout < self.heartbeat_interval * 5 {
            return Err(StoreError::Config(format!(
                "--election-timeout[{}ms] should be at least 5 times as --heartbeat-interval[{}ms]",
                self.election_timeout.as_millis(),
                self.heartbeat_interval.as_millis()
            )));
        }
        if self.snapshot_count == 0 {
            return Err(StoreError::Config("--snapshot-count must be positive".into()));
        }
        if self.join.is_none() && self.initial_cluster_state == ClusterState::New {
            let mine = self.initial_cluster.iter().find(|(n, _)| n == &self.name).ok_or_else(|| {
                StoreError::Config(format!(
                    "couldn't find local name {:?} in the initial cluster configuration",
                    self.name
                ))
            })?;
            let mut listed = mine.1.clone();
            let mut advertised = self.advertise_peer_urls.clone();
            listed.sort();
            advertised.sort();
            if listed != advertised {
                return Err(StoreError::Config(format!(
                    "--initial-cluster has {}={} but missing from --initial-advertise-peer-urls={}",
                    self.name,
                    mine.1.join(","),
                    self.advertise_peer_urls.join(",")
                )));
            }
        }
        Ok(())
    }
}

impl StoreConfig {
    /// With `tls` every URL this member advertises or dials must be `https://`, without it
    /// `http://` (a member would otherwise dial TLS at a plain port, or the reverse, and
    /// fail with a handshake error far from the cause).
    pub fn check_schemes(&self, tls: bool) -> Result<()> {
        let listed = self.initial_cluster.iter().flat_map(|(_, urls)| urls.iter().map(|u| ("--initial-cluster", u)));
        let urls = self
            .advertise_client_urls
            .iter()
            .map(|u| ("--advertise-client-urls", u))
            .chain(self.advertise_peer_urls.iter().map(|u| ("--initial-advertise-peer-urls", u)))
            .chain(self.join.iter().map(|u| ("--join", u)))
            .chain(listed);
        for (flag, url) in urls {
            check_scheme(flag, url, tls)?;
        }
        Ok(())
    }
}

/// `url` (given with `flag`) is `https://` when the ports serve `tls`, else `http://`.
pub fn check_scheme(flag: &str, url: &str, tls: bool) -> Result<()> {
    match (tls, url.starts_with("https://")) {
        (true, false) => {
            Err(StoreError::Config(format!("{flag} {url}: plain HTTP needs --insecure; use https:// URLs")))
        }
        (false, true) => {
            Err(StoreError::Config(format!("{flag} {url}: --insecure serves plain HTTP; use http:// URLs")))
        }
        _ => Ok(()),
    }
}

/// Parses etcd's `--initial-cluster` (`n1=http://a:2380,n2=http://b:2380,n1=http://c:2380`);
/// a name may appear several times, one URL each.
pub fn parse_initial_cluster(spec: &str) -> Result<Vec<(String, Vec<String>)>> {
    let mut members: Vec<(String, Vec<String>)> = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, url) = part
            .split_once('=')
            .ok_or_else(|| StoreError::Config(format!("--initial-cluster: {part:?} is not NAME=URL")))?;
        if name.is_empty() {
            return Err(StoreError::Config(format!("--initial-cluster: empty name in {part:?}")));
        }
        let url = validate_url("--initial-cluster", url)?;
        match members.iter_mut().find(|(n, _)| n == name) {
            Some((_, urls)) => urls.push(url),
            None => members.push((name.to_string(), vec![url])),
        }
    }
    if members.is_empty() {
        return Err(StoreError::Config("--initial-cluster is empty".into()));
    }
    let mut seen = std::collections::HashSet::new();
    for (name, urls) in &members {
        for u in urls {
            if !seen.insert(u.clone()) {
                return Err(StoreError::Config(format!(
                    "--initial-cluster: URL {u} is listed twice (again for {name})"
                )));
            }
        }
    }
    Ok(members)
}

/// Checks `url` is an http(s) URL with a host and port; returns it normalised.
pub fn validate_url(flag: &str, url: &str) -> Result<String> {
    let parsed = url::Url::parse(url).map_err(|e| StoreError::Config(format!("{flag}: {url:?} is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(StoreError::Config(format!("{flag}: {url:?} must use http or https")));
    }
    if parsed.host_str().is_none() || parsed.port_or_known_default().is_none() {
        return Err(StoreError::Config(format!("{flag}: {url:?} needs a host and a port")));
    }
    if parsed.path() != "/" && !parsed.path().is_empty() {
        return Err(StoreError::Config(format!("{flag}: {url:?} must not have a path")));
    }
    Ok(url.trim_end_matches('/').to_string())
}

/// Parses a comma-separated URL list.
pub fn parse_urls(flag: &str, list: &str) -> Result<Vec<String>> {
    let urls: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|u| validate_url(flag, u))
        .collect::<Result<_>>()?;
    if urls.is_empty() {
        return Err(StoreError::Config(format!("{flag} needs at least one URL")));
    }
    Ok(urls)
}

/// What to keep (a member's `--auto-compaction-*` flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoCompaction {
    Disabled,
    /// Keep at least this much time of history.
    Periodic(Duration),
    /// Keep this many revisions.
    Revision(i64),
}

impl AutoCompaction {
    /// Parses etcd's flag pair: mode `periodic` with a retention like `5m`, `1h` or a bare
    /// number of hours (etcd's legacy form), or mode `revision` with a count; `0` disables.
    pub fn parse(mode: &str, retention: &str) -> Result<AutoCompaction, String> {
        let retention = retention.trim();
        match mode {
            "periodic" => {
                if let Ok(hours) = retention.parse::<u64>() {
                    return Ok(if hours == 0 {
                        AutoCompaction::Disabled
                    } else {
                        AutoCompaction::Periodic(Duration::from_secs(hours * 3600))
                    });
                }
                let d = berth_proto::model::duration::parse_go_duration(retention).ok_or_else(|| {
                    format!("--auto-compaction-retention: {retention:?} is not a duration (e.g. 5m, 1h) or a number of hours")
                })?;
                Ok(if d.is_zero() { AutoCompaction::Disabled } else { AutoCompaction::Periodic(d) })
            }
            "revision" => match retention.parse::<i64>() {
                Ok(0) => Ok(AutoCompaction::Disabled),
                Ok(n) if n > 0 => Ok(AutoCompaction::Revision(n)),
                _ => Err(format!("--auto-compaction-retention: {retention:?} is not a revision count")),
            },
            other => Err(format!(
                "--auto-compaction-mode: {other:?} is not a valid mode (must be \"periodic\" or \"revision\")"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_as_etcd_reads_them() {
        assert_eq!(AutoCompaction::parse("periodic", "5m"), Ok(AutoCompaction::Periodic(Duration::from_secs(300))));
        assert_eq!(AutoCompaction::parse("periodic", "1h30m"), Ok(AutoCompaction::Periodic(Duration::from_secs(5400))));
        assert_eq!(AutoCompaction::parse("periodic", "2"), Ok(AutoCompaction::Periodic(Duration::from_secs(7200))));
        assert_eq!(AutoCompaction::parse("periodic", "0"), Ok(AutoCompaction::Disabled));
        assert_eq!(AutoCompaction::parse("revision", "1000"), Ok(AutoCompaction::Revision(1000)));
        assert_eq!(AutoCompaction::parse("revision", "0"), Ok(AutoCompaction::Disabled));
        for (mode, retention) in
            [("periodic", "5x"), ("periodic", ""), ("revision", "-3"), ("revision", "1h"), ("daily", "1")]
        {
            assert!(AutoCompaction::parse(mode, retention).is_err(), "{mode} {retention}");
        }
    }

    #[test]
    fn initial_cluster_parses_and_rejects_garbage() {
        let m =
            parse_initial_cluster("a=http://127.0.0.1:2380,b=http://127.0.0.1:2381,a=http://127.0.0.2:2380").unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].1.len(), 2);
        for bad in
            ["", "a", "=http://x:1", "a=ftp://x:1", "a=http://x:1/path", "a=http://x:1,b=http://x:1", "a=not a url"]
        {
            assert!(parse_initial_cluster(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn validation_checks_name_and_urls() {
        let mut c = StoreConfig::single("n1", "/tmp/x".into(), "http://127.0.0.1:2379", "http://127.0.0.1:2380");
        c.validate().unwrap();
        c.name = "other".into();
        assert!(c.validate().unwrap_err().to_string().contains("couldn't find local name"));
        c.name = "n1".into();
        c.advertise_peer_urls = vec!["http://127.0.0.1:9999".into()];
        assert!(c.validate().is_err());
        let mut c = StoreConfig::single("n1", "/tmp/x".into(), "http://127.0.0.1:2379", "http://127.0.0.1:2380");
        c.election_timeout = Duration::from_millis(200);
        assert!(c.validate().is_err());
    }
}
