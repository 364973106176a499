//! `berth-server`: the Berth control plane.
//!
//! A server runs one member of the replicated store, serves the etcd v3 API, the
//! Kubernetes API ([`api`] over the [`registry`] and the [`cache`]), and — while it is the
//! Raft leader — the leader-only [`tasks`] under the [`supervisor`]; every server scrapes
//! agents' [`usage`] for metrics.k8s.io. The binary is thin:
//! [`cli`] turns flags into a [`ServerConfig`], [`run`] does the rest; [`serve`] holds the
//! API port's transport (TLS unless `--insecure`) and connection timeouts, [`pki`] the
//! certificates behind it.

pub mod api;
pub mod audit;
pub mod bootstrap;
pub mod cache;
pub mod cli;
pub mod cron;
pub mod encryption;
pub mod identity;
pub mod periodic;
pub mod pki;
pub mod rbac_defaults;
pub mod registry;
pub mod resource;
pub mod serve;
pub mod serviceaccount;
pub mod supervisor;
pub mod tasks;
#[cfg(feature = "testing")]
pub mod testing;
pub mod usage;

use std::sync::Arc;

use berth_store::{ClusterState, NetworkFaults, Store, StoreConfig, StoreNode};
use registry::storage::Storage;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{0}")]
    Config(String),
    #[error("binding {url}: {message}")]
    Bind { url: String, message: String },
    #[error(transparent)]
    Store(#[from] berth_store::StoreError),
    /// The store's storage failed (a full or failing disk): the server exits so that its
    /// supervisor restarts it, as etcd does.
    #[error("the store member stopped: {0}; exiting so that a restart can recover it")]
    StorageFailed(String),
}

/// Everything a server needs to start.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub store: StoreConfig,
    pub listen_client_urls: Vec<String>,
    pub listen_peer_urls: Vec<String>,
    /// Where the Kubernetes API listens (at least one URL; the first is advertised).
    pub listen_api_urls: Vec<String>,
    /// Tunables of the leader tasks.
    pub tasks: tasks::Settings,
    /// A backup to seed a fresh data dir from before the member starts (ignored, with a
    /// warning, when the data dir already holds a database).
    pub restore_snapshot: Option<std::path::PathBuf>,
    /// `--insecure`: plain HTTP, no authentication (every caller is an administrator).
    pub insecure: bool,
    /// `--tls-san`: more names for the serving certificate.
    pub tls_sans: Vec<String>,
    /// `--encryption-provider-config`: what is encrypted at rest, and how (default: the
    /// data dir's [`encryption::DEFAULT_CONFIG`]).
    pub encryption_config: Option<std::path::PathBuf>,
    /// `--audit-policy-file` and `--audit-log-path`.
    pub audit: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// `--token` and its discovery flags: fetch the cluster's secrets before joining.
    pub join_token: Option<JoinToken>,
}

/// How a server joining with a control-plane bootstrap token finds the cluster.
#[derive(Debug, Clone)]
pub struct JoinToken {
    pub token: berth_proto::bootstrap_token::Token,
    /// A running server's API URL (`--discovery-server`).
    pub server: String,
    /// `--discovery-token-ca-cert-hash`.
    pub pins: Vec<String>,
    pub timeout: std::time::Duration,
}

/// Transport, connection timeouts and body limits of the API port.
#[derive(Clone)]
pub struct HttpSettings {
    pub transport: serve::Transport,
    pub conn: serve::ConnTimeouts,
    pub body: api::BodyLimits,
    /// The service-account token issuer (None: `--insecure`, no tokens).
    pub service_accounts: Option<Arc<serviceaccount::token::Issuer>>,
    /// How the API server dials agents' ports (None: plain HTTP, `--insecure`).
    pub agent_tls: Option<Arc<rustls::ClientConfig>>,
    /// Where requests are audited (None: not at all).
    pub audit: Option<Arc<audit::AuditLog>>,
}

impl HttpSettings {
    /// Default limits on `transport`.
    pub fn on(transport: serve::Transport) -> HttpSettings {
        HttpSettings {
            transport,
            conn: Default::default(),
            body: Default::default(),
            service_accounts: None,
            agent_tls: None,
            audit: None,
        }
    }
}

/// The Kubernetes-facing half of a server: API, watch cache, leader tasks.
pub struct ControlPlane {
    pub api: api::ApiState,
    pub api_addr: std::net::SocketAddr,
    pub supervisor: Arc<tasks::context::SupervisorStatus>,
    /// An API client over the in-process router (no network hop).
    pub client: kube::Client,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl ControlPlane {
    /// Serves the API on `listener` over `http`'s transport and limits, and supervises
    /// the leader tasks, until `shutdown`.
    pub fn start_configured(
        storage: Storage,
        listener: TcpListener,
        server_name: &str,
        settings: tasks::Settings,
        http: HttpSettings,
        shutdown: CancellationToken,
    ) -> ControlPlane {
        let api_addr = listener.local_addr().expect("a bound listener has an address");
        let store = storage.store().clone();
        let cache = cache::WatchCache::start(&storage, &shutdown);
        let mut state = api::ApiState::new(storage, cache.clone(), shutdown.clone());
        if let Some(issuer) = http.service_accounts.clone() {
            state = state.with_service_accounts(issuer);
        }
        if let Some(tls) = http.agent_tls.clone() {
            state.agents = api::agent_dial::AgentDialer::tls(tls);
        }
        state.audit = http.audit.clone();
        state.body_limits = http.body;
        state.usage = Arc::new(usage::UsageCache::new(settings.metric_resolution));
        // Every server scrapes, so every server answers metrics.k8s.io (see `usage`).
        let scraper = tokio::spawn(usage::scraper::run(
            state.usage.clone(),
            cache.clone(),
            state.agents.clone(),
            shutdown.clone(),
        ));
        let router = api::router(state.clone());
        let serve_shutdown = shutdown.clone();
        let server = tokio::spawn({
            let router = router.clone();
            async move { serve::serve(listener, router, http.transport, http.conn, serve_shutdown).await }
        });
        let status = Arc::new(tasks::context::SupervisorStatus::default());
        let client = api::loopback_client(router.clone());
        let ctx = tasks::context::TaskContext {
            client: client.clone(),
            server: server_name.to_string(),
            term: 0,
            status: status.clone(),
            settings: Arc::new(settings),
            // Replaced by the supervisor with a fresh set for each leadership term.
            informers: tasks::workqueue::Informers::new(client.clone(), shutdown.child_token()),
        };
        let term_client: supervisor::TermClient = {
            let router = router.clone();
            Arc::new(move |term| api::term_client(router.clone(), term))
        };
        let supervisor = tokio::spawn(supervisor::run(store, tasks::all(), ctx, term_client, shutdown));
        tracing::info!(%api_addr, "Kubernetes API listening");
        ControlPlane { api: state, api_addr, supervisor: status, client, tasks: vec![server, supervisor, scraper] }
    }

    /// Waits for the API server and the supervisor to stop (after `shutdown`).
    pub async fn stopped(self) {
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Binds `url`'s host and port.
pub async fn bind(url: &str) -> Result<TcpListener, ServerError> {
    let parsed = url::Url::parse(url).map_err(|e| ServerError::Config(format!("{url}: {e}")))?;
    let host = parsed.host_str().ok_or_else(|| ServerError::Config(format!("{url}: no host")))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = parsed.port_or_known_default().ok_or_else(|| ServerError::Config(format!("{url}: no port")))?;
    TcpListener::bind((host, port))
        .await
        .map_err(|e| ServerError::Bind { url: url.to_string(), message: e.to_string() })
}

/// Runs a server until `shutdown` is cancelled.
pub async fn run(config: ServerConfig, shutdown: CancellationToken) -> Result<(), ServerError> {
    let mut client_listeners = Vec::new();
    for url in &config.listen_client_urls {
        client_listeners.push(bind(url).await?);
    }
    let peer_url =
        config.listen_peer_urls.first().ok_or_else(|| ServerError::Config("--listen-peer-urls is empty".into()))?;
    let peer_listener = bind(peer_url).await?;
    let (advertised_api_url, more_api_urls) =
        config.listen_api_urls.split_first().ok_or_else(|| ServerError::Config("--listen-api-url is empty".into()))?;
    let api_listener = bind(advertised_api_url).await?;
    let mut more_api_listeners = Vec::new();
    for url in more_api_urls {
        more_api_listeners.push(bind(url).await?);
    }
    if let Some(backup) = &config.restore_snapshot {
        restore(backup, &config.store.data_dir).await?;
    }
    let api_url = identity::reachable_url(
        advertised_api_url,
        api_listener
            .local_addr()
            .map_err(|e| ServerError::Bind { url: advertised_api_url.clone(), message: e.to_string() })?,
    );
    if let Some(join) = &config.join_token {
        fetch_cluster_secrets(&config.store.data_dir, join).await?;
    }
    let mut store_config = config.store.clone();
    // The first server of a new single-member cluster makes the cluster's secrets (CAs,
    // encryption key); the members of a larger one must share them, so they are put in
    // place beforehand (`berthctl certs ca`), and a joining server copies them.
    let may_create_secrets = config.store.join.is_none()
        && config.store.initial_cluster_state == ClusterState::New
        && config.store.initial_cluster.len() == 1;
    let (transformer, encryption_path) = encryption_transformer(&config, may_create_secrets)?;
    let (transport, credentials, api_pki, etcd_pki) = if config.insecure {
        tracing::warn!(
            "--insecure: the Kubernetes API and the etcd ports are plain HTTP and every caller is an administrator"
        );
        eprintln!("berth-server: WARNING: --insecure: plain HTTP, no authentication; never expose this server");
        (serve::Transport::Plain, None, None, None)
    } else {
        let mut urls = config.listen_api_urls.clone();
        urls.push(api_url.clone());
        let may_create_ca = may_create_secrets;
        let data_dir = &config.store.data_dir;
        let api_pki = pki::ApiPki::load_or_create(data_dir, may_create_ca, pki::serving_sans(&urls, &config.tls_sans))?;
        let store_urls: Vec<String> = [
            &config.listen_client_urls,
            &config.listen_peer_urls,
            &config.store.advertise_client_urls,
            &config.store.advertise_peer_urls,
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
        let etcd_pki =
            pki::EtcdPki::load_or_create(data_dir, may_create_ca, pki::member_sans(&store_urls, &config.tls_sans))?;
        store_config.tls = Some(etcd_pki.tls.clone());
        let credentials = berth_proto::kubeconfig::AdminCredentials {
            api: berth_proto::kubeconfig::Credentials {
                ca_pem: api_pki.ca.issued.cert_pem.clone(),
                client: pki::admin_client(&api_pki.ca)?,
            },
            etcd: Some(etcd_pki.admin_client(data_dir)?),
        };
        let transport = serve::Transport::tls(api_pki.config.clone(), api_pki.clients.clone());
        (transport, Some(credentials), Some(api_pki), Some(etcd_pki))
    };
    let service_accounts = match &api_pki {
        Some(_) => Some(service_account_issuer(&config.store.data_dir, may_create_secrets)?),
        None => None,
    };
    let audit_log = match &config.audit {
        Some((policy, path)) => {
            let text = std::fs::read_to_string(policy)
                .map_err(|e| ServerError::Config(format!("--audit-policy-file {}: {e}", policy.display())))?;
            let policy_doc = audit::Policy::parse(&text)
                .map_err(|e| ServerError::Config(format!("--audit-policy-file {}: {e}", policy.display())))?;
            let log = audit::AuditLog::start(policy_doc, path)
                .await
                .map_err(|e| ServerError::Config(format!("--audit-log-path: {e}")))?;
            tracing::info!(policy = %policy.display(), log = %path.display(), "auditing requests");
            Some(log)
        }
        None => None,
    };
    let mut task_settings = config.tasks.clone();
    task_settings.cluster_ca = api_pki.as_ref().map(|p| p.ca.clone());
    if api_pki.is_some() {
        task_settings.control_plane_secrets = Some(cluster_secrets(&config.store.data_dir, &encryption_path)?);
    }
    store_config.validate().map_err(|e| ServerError::Config(e.to_string()))?;
    let store = StoreNode::start(store_config, peer_listener, Arc::new(NetworkFaults::default())).await?;
    let control = ControlPlane::start_configured(
        Storage::new(store.clone(), transformer.clone()),
        api_listener,
        &config.store.name,
        task_settings,
        HttpSettings {
            service_accounts: service_accounts.clone(),
            agent_tls: api_pki.as_ref().map(|p| p.kubelet_client.clone()),
            audit: audit_log.clone(),
            ..HttpSettings::on(transport.clone())
        },
        shutdown.clone(),
    );
    let identity = identity::ServerIdentity {
        name: config.store.name.clone(),
        api_url,
        client_urls: config.store.advertise_client_urls.clone(),
        peer_urls: config.store.advertise_peer_urls.clone(),
    };
    let mut servers = Vec::new();
    if let Some(api_pki) = api_pki {
        servers.push(tokio::spawn(api_pki.keep_renewed(shutdown.clone())));
    }
    servers.push(tokio::spawn(transformer.watch_file(encryption_path, shutdown.clone())));
    if let Some(etcd_pki) = etcd_pki {
        servers.push(tokio::spawn(etcd_pki.keep_renewed(shutdown.clone())));
    }
    for listener in more_api_listeners {
        // The same API (state, watch cache, limits) on another address.
        let router = api::router(control.api.clone());
        let http = HttpSettings::on(transport.clone());
        servers.push(tokio::spawn(serve::serve(listener, router, http.transport, http.conn, shutdown.clone())));
    }
    publish_admin_kubeconfig(&config.store.data_dir, &identity, credentials.as_ref());
    let kubeconfig = config.store.data_dir.join(berth_proto::kubeconfig::ADMIN_KUBECONFIG);
    let identity_task = tokio::spawn(identity::run(control.client.clone(), identity, kubeconfig, shutdown.clone()));
    for listener in client_listeners {
        let serving = berth_store::server::serve_client(store.clone(), listener, shutdown.clone());
        servers.push(tokio::spawn(async move {
            if let Err(e) = serving.await {
                tracing::error!(error = %e, "the etcd API listener stopped");
            }
        }));
    }
    let stopped = store.shutdown_token();
    let mut failed = None;
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = stopped.cancelled() => tracing::warn!("the store member stopped"),
        reason = storage_failure(&store) => {
            tracing::error!(%reason, "the store's storage failed; exiting so that a restart can recover");
            failed = Some(reason);
        }
    }
    shutdown.cancel();
    let _ = identity_task.await;
    control.stopped().await;
    store.shutdown().await;
    for s in servers {
        let _ = s.await;
    }
    match failed {
        Some(reason) => Err(ServerError::StorageFailed(reason)),
        None => Ok(()),
    }
}

/// Resolves when the member's Raft core has stopped for a reason a restart can get past
/// (ENOSPC, an I/O error; the Jepsen `disk-full` nemesis found a server that kept running
/// and answering 503 after its disk had room again). Corruption keeps the server up,
/// refusing to serve and saying why on `/health`, since a restart cannot repair it.
async fn storage_failure(store: &Store) -> String {
    let mut metrics = store.raft().metrics();
    loop {
        if let Some(reason) = store.stopped_reason().filter(|r| !berth_store::error::is_corruption(r)) {
            return reason;
        }
        if metrics.changed().await.is_err() {
            // The core is gone without a reason: nothing more to wait for.
            return std::future::pending().await;
        }
    }
}

/// `--restore-snapshot`: seeds a fresh data dir from a backup before the member starts. On a
/// data dir that already holds a database the flag is ignored (as etcd ignores the
/// `--initial-cluster*` flags on restart), so the same command line can restart the member.
async fn restore(backup: &std::path::Path, data_dir: &std::path::Path) -> Result<(), ServerError> {
    if data_dir.join("db").exists() {
        tracing::warn!(
            backup = %backup.display(),
            data_dir = %data_dir.display(),
            "--restore-snapshot ignored: the data dir already holds a database"
        );
        return Ok(());
    }
    let (b, d) = (backup.to_path_buf(), data_dir.to_path_buf());
    let summary = tokio::task::spawn_blocking(move || berth_store::restore::restore_backup(&b, &d))
        .await
        .map_err(|e| ServerError::Config(format!("restore task: {e}")))?
        .map_err(|e| ServerError::Config(format!("--restore-snapshot {}: {e}", backup.display())))?;
    tracing::info!(
        backup = %backup.display(),
        revision = summary.revision,
        kv_records = summary.kv_records,
        hash_checked = summary.hash_checked,
        "restored the store from a backup"
    );
    Ok(())
}

/// The encryption-at-rest configuration and its file: `--encryption-provider-config`, else
/// the data dir's, written with a new key when `may_create` and there is none.
fn encryption_transformer(
    config: &ServerConfig,
    may_create: bool,
) -> Result<(Arc<encryption::Transformer>, std::path::PathBuf), ServerError> {
    let path = match &config.encryption_config {
        Some(path) => path.clone(),
        None => config.store.data_dir.join(encryption::DEFAULT_CONFIG),
    };
    if config.encryption_config.is_none() && !path.exists() {
        if !may_create {
            return Err(ServerError::Config(format!(
                "no encryption configuration at {}: the members of a cluster share one (copy it from a running \
                 server, or give --encryption-provider-config; `berthctl certs ca` prepares new members)",
                path.display()
            )));
        }
        let text = encryption::generated_config().map_err(ServerError::Config)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| ServerError::Config(format!("{}: {e}", dir.display())))?;
        }
        berth_proto::pki::write_private_key(&path, &text)
            .map_err(|e| ServerError::Config(format!("writing the encryption configuration: {e}")))?;
        tracing::info!(path = %path.display(), "created the encryption configuration (Secrets: aesgcm key1)");
    }
    let transformer = encryption::Transformer::load(&path)
        .map_err(|e| ServerError::Config(format!("--encryption-provider-config: {e}")))?;
    Ok((transformer, path))
}

/// The cluster's service-account token issuer, from the data dir's key — created when
/// `may_create` (the first server of a new cluster) and there is none.
fn service_account_issuer(
    data_dir: &std::path::Path,
    may_create: bool,
) -> Result<Arc<serviceaccount::token::Issuer>, ServerError> {
    use berth_proto::pki::{self, SERVICE_ACCOUNT_KEY};
    let path = data_dir.join(SERVICE_ACCOUNT_KEY);
    if !path.exists() {
        if !may_create {
            return Err(ServerError::Config(format!(
                "no service-account key at {}: the members of a cluster share one (copy it from a running server; \
                 `berthctl certs ca` prepares new members)",
                path.display()
            )));
        }
        let key = pki::new_service_account_key().map_err(|e| ServerError::Config(e.to_string()))?;
        pki::write_private_key(&path, &key).map_err(|e| ServerError::Config(e.to_string()))?;
        tracing::info!(path = %path.display(), "created the service-account signing key");
    }
    let pem = std::fs::read_to_string(&path).map_err(|e| ServerError::Config(format!("{}: {e}", path.display())))?;
    serviceaccount::token::Issuer::from_pem(&pem, serviceaccount::token::DEFAULT_ISSUER)
        .map(Arc::new)
        .map_err(|e| ServerError::Config(format!("{}: {e}", path.display())))
}

/// What a joining server needs from the cluster (Secret key → contents): the CAs, the
/// service-account key and the encryption configuration (`encryption` wherever it is).
fn cluster_secrets(
    data_dir: &std::path::Path,
    encryption: &std::path::Path,
) -> Result<std::collections::BTreeMap<String, String>, ServerError> {
    let mut out = std::collections::BTreeMap::new();
    for (key, relative) in berth_proto::pki::CONTROL_PLANE_FILES {
        let path = if *relative == berth_proto::pki::ENCRYPTION_CONFIG {
            encryption.to_path_buf()
        } else {
            data_dir.join(relative)
        };
        let text =
            std::fs::read_to_string(&path).map_err(|e| ServerError::Config(format!("{}: {e}", path.display())))?;
        out.insert(key.to_string(), text);
    }
    Ok(out)
}

/// `--token`: discovers the cluster (its CA pinned) and writes its secrets into the data
/// dir — kubeadm's `join --control-plane` with the certificates fetched, not copied. A data
/// dir that has the CA already is left as it is (a restart).
async fn fetch_cluster_secrets(data_dir: &std::path::Path, join: &JoinToken) -> Result<(), ServerError> {
    use berth_proto::bootstrap_token as bt;
    let config_error = |e: String| ServerError::Config(format!("--token: {e}"));
    if data_dir.join(berth_proto::pki::PKI_DIR).join(berth_proto::pki::CA_CERT).exists() {
        return Ok(());
    }
    let found = bt::discover(std::slice::from_ref(&join.server), &join.token, &join.pins, join.timeout)
        .await
        .map_err(config_error)?;
    let client = bt::client(&join.server, &found.ca_pem, &join.token).map_err(config_error)?;
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> = kube::Api::namespaced(client, bt::NAMESPACE);
    let secret =
        tokio::time::timeout(std::time::Duration::from_secs(10), secrets.get(berth_proto::pki::CONTROL_PLANE_SECRET))
            .await
            .map_err(|_| config_error("reading the cluster's secrets: timed out".into()))?
            .map_err(|e| {
                config_error(format!("reading the cluster's secrets (a control-plane token is needed): {e}"))
            })?;
    let data = secret.data.unwrap_or_default();
    for (key, relative) in berth_proto::pki::CONTROL_PLANE_FILES {
        let value = data.get(*key).ok_or_else(|| config_error(format!("the cluster's secrets lack {key}")))?;
        let path = data_dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| ServerError::Config(format!("{}: {e}", parent.display())))?;
        }
        let text = String::from_utf8(value.0.clone()).map_err(|_| config_error(format!("{key} is not text")))?;
        berth_proto::pki::write_private_key(&path, &text).map_err(|e| ServerError::Config(e.to_string()))?;
    }
    tracing::info!(server = %join.server, "fetched the cluster's CAs and keys with the bootstrap token");
    Ok(())
}

/// Writes the admin kubeconfig into the data dir when it is not there yet (first start),
/// and says where it is.
fn publish_admin_kubeconfig(
    data_dir: &std::path::Path,
    identity: &identity::ServerIdentity,
    credentials: Option<&berth_proto::kubeconfig::AdminCredentials>,
) {
    match identity::write_admin_kubeconfig(data_dir, identity, credentials) {
        Ok(Some(path)) => {
            tracing::info!(path = %path.display(), "wrote the admin kubeconfig");
            eprintln!("berth-server: admin kubeconfig written to {} (export KUBECONFIG={0})", path.display());
        }
        Ok(None) => tracing::info!(
            path = %data_dir.join(berth_proto::kubeconfig::ADMIN_KUBECONFIG).display(),
            "admin kubeconfig"
        ),
        Err(e) => tracing::warn!(error = %e, "writing the admin kubeconfig"),
    }
}
