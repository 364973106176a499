//! Test support (the `testing` feature): in-process Berth servers, each a store member with
//! its Kubernetes API on a port-0 listener — one alone ([`Server::start`], for the agent's
//! tests) or a cluster on [`berth_store::testing::Cluster`] ([`Cluster`]) — and a stand-in
//! kubelet ([`kubelet`]). Servers are secure as in production: TLS with the test process's
//! cluster CA ([`TestPki`]), clients authenticated by certificates ([`admin`],
//! [`credentials`]; raw HTTP tests [`connect`]). Everything stops when dropped, also on
//! test failure.

pub mod kubelet;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use berth_store::{NetworkFaults, Store, StoreConfig, StoreNode};
use berth_testkit::eventually;
use k8s_openapi::api::core::v1::Namespace;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use berth_proto::kubeconfig::{admin_kubeconfig_yaml, Credentials, ServersExtension};

use berth_proto::pki::{Ca, CaRole};
use tokio_rustls::client::TlsStream;

use crate::pki::ApiPki;
use crate::serve::Transport;
use crate::{tasks, ControlPlane, HttpSettings};

/// How long a server gets to elect a leader and create the system namespaces.
const READY: Duration = Duration::from_secs(20);

/// The test process's cluster CA: every test server of the process is given it (so any
/// test client trusts any test server, as [`admin`] and [`connect`] do).
fn process_ca() -> &'static Ca {
    static CA: OnceLock<Ca> = OnceLock::new();
    CA.get_or_init(|| Ca::generate("berth-test-ca").expect("generating a CA"))
}

/// The test process's etcd CA.
fn process_etcd_ca() -> &'static Ca {
    static CA: OnceLock<Ca> = OnceLock::new();
    CA.get_or_init(|| Ca::generate("berth-test-etcd-ca").expect("generating a CA"))
}

/// The test process's encryption at rest (Secrets under one AES-GCM key), shared by every
/// in-process server so that all members of a test cluster read each other's writes.
pub fn process_encryption() -> Arc<crate::encryption::Transformer> {
    static T: OnceLock<Arc<crate::encryption::Transformer>> = OnceLock::new();
    T.get_or_init(|| {
        let config = crate::encryption::generated_config().expect("a key");
        crate::encryption::Transformer::parse(&config).expect("a valid configuration")
    })
    .clone()
}

/// The test process's service-account signing key, shared by every in-process server (so
/// that a token from one member is good on another).
pub fn process_service_accounts() -> Arc<crate::serviceaccount::token::Issuer> {
    static ISSUER: OnceLock<Arc<crate::serviceaccount::token::Issuer>> = OnceLock::new();
    ISSUER
        .get_or_init(|| {
            let key = berth_proto::pki::new_service_account_key().expect("a key");
            Arc::new(
                crate::serviceaccount::token::Issuer::from_pem(&key, crate::serviceaccount::token::DEFAULT_ISSUER)
                    .expect("a valid key"),
            )
        })
        .clone()
}

/// The CA agents of in-process tests check callers of their port against (the API
/// servers of [`Server`] present certificates of it).
pub fn agent_client_ca() -> Option<String> {
    Some(process_ca().issued.cert_pem.clone())
}

/// Puts the test CAs into `dir/pki` (for `berthctl up --data-dir dir`, which then uses
/// them, so [`admin`] and [`kubeconfig_file`] reach that cluster too).
pub fn seed_ca(dir: &Path) {
    berth_proto::pki::write_ca(dir, CaRole::Cluster, process_ca()).unwrap();
    berth_proto::pki::write_ca(dir, CaRole::Etcd, process_etcd_ca()).unwrap();
}

/// An administrator's credentials (`system:masters`) for every test server.
pub fn admin() -> &'static Credentials {
    static ADMIN: OnceLock<Credentials> = OnceLock::new();
    ADMIN.get_or_init(|| credentials("kubernetes-admin", &[crate::api::authn::MASTERS]))
}

/// Credentials of `user` in `groups` for every test server.
pub fn credentials(user: &str, groups: &[&str]) -> Credentials {
    Credentials {
        ca_pem: process_ca().issued.cert_pem.clone(),
        client: process_ca().issue_client(user, groups).unwrap(),
    }
}

/// A TLS connection to the test server at `url` (`https://HOST:PORT`) presenting
/// `credentials` (none: anonymous), for tests that speak raw HTTP.
pub async fn connect_as(url: &str, credentials: Option<&Credentials>) -> TlsStream<TcpStream> {
    let host = url.trim_start_matches("https://").trim_end_matches('/');
    let client = credentials.map(|c| (c.client.cert_pem.as_str(), c.client.key_pem.as_str()));
    let config = berth_proto::tls::client_config(&process_ca().issued.cert_pem, client).unwrap();
    let tcp = TcpStream::connect(host).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.expect("TLS handshake")
}

/// [`connect_as`] the administrator.
pub async fn connect(url: &str) -> TlsStream<TcpStream> {
    connect_as(url, Some(admin())).await
}

/// A kubeconfig (YAML) for kubectl as the administrator of the test server at `url`.
pub fn kubeconfig(url: &str) -> String {
    let servers = ServersExtension { api_servers: vec![url.to_string()], etcd_endpoints: vec![] };
    admin_kubeconfig_yaml("berth", &servers, Some(admin()))
}

/// Writes a kubeconfig for the test server(s) at `urls` with `credentials` to `path`.
pub fn write_kubeconfig(path: &Path, urls: &[&str], credentials: &Credentials) -> std::path::PathBuf {
    let servers =
        ServersExtension { api_servers: urls.iter().map(|u| u.to_string()).collect(), etcd_endpoints: vec![] };
    std::fs::write(path, admin_kubeconfig_yaml("berth", &servers, Some(credentials))).unwrap();
    path.to_path_buf()
}

/// A kubeconfig (YAML) for `url` with `credentials`.
pub fn kubeconfig_as(url: &str, credentials: &Credentials) -> String {
    let servers = ServersExtension { api_servers: vec![url.to_string()], etcd_endpoints: vec![] };
    admin_kubeconfig_yaml("berth", &servers, Some(credentials))
}

/// Runs the real kubectl with `kubeconfig` (a file's text) and `stdin`, in a private HOME:
/// (success, stdout, stderr).
pub async fn kubectl(kubeconfig: &str, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    std::fs::write(&path, kubeconfig).unwrap();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let stdin = stdin.unwrap_or_default().to_string();
    let out = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = std::process::Command::new("kubectl")
            .args(&args)
            .env("KUBECONFIG", &path)
            .env("HOME", dir.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("kubectl on PATH");
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The credentials of node `node`'s agent (`system:node:<node>` in `system:nodes`).
pub fn node_credentials(node: &str) -> Credentials {
    credentials(&format!("system:node:{node}"), &["system:nodes"])
}

/// An administrator's kubeconfig for `url` in a temporary file (removed when dropped), for
/// a kubectl run.
pub fn kubeconfig_file(url: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    write_kubeconfig(file.path(), &[url], admin());
    file
}

/// A test server's TLS material, on disk under a data dir (so that a restarted server
/// finds the same files), issued by the process's test CA.
#[derive(Clone)]
pub struct TestPki {
    pub api: Arc<ApiPki>,
}

impl TestPki {
    /// The PKI of `dir` (given the test CA when it has none).
    pub fn in_dir(dir: &Path) -> TestPki {
        if berth_proto::pki::read_ca(dir, CaRole::Cluster).unwrap().is_none() {
            berth_proto::pki::write_ca(dir, CaRole::Cluster, process_ca()).unwrap();
        }
        let api = Arc::new(ApiPki::load_or_create(dir, false, crate::pki::cluster_sans()).expect("test PKI"));
        TestPki { api }
    }

    /// The TLS transport of the API port.
    pub fn transport(&self) -> Transport {
        Transport::tls(self.api.config.clone(), self.api.clients.clone())
    }

    /// HTTP settings with default limits over TLS (agents dialed over TLS too).
    pub fn http(&self) -> HttpSettings {
        HttpSettings { agent_tls: Some(self.api.kubelet_client.clone()), ..HttpSettings::on(self.transport()) }
    }
}

/// One Berth server: a store member and the API server (with its leader tasks) over it.
pub struct Server {
    pub name: String,
    pub store: Store,
    pub control: Option<ControlPlane>,
    pub shutdown: CancellationToken,
    pub api_url: String,
    /// The data directory of a server started alone on a fresh one.
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    /// A single-member server on a fresh data directory and port-0 listeners, ready to
    /// serve (the system namespaces exist).
    pub async fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let peer = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let store = start_single_store(dir.path(), peer).await.expect("store starts");
        let api = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let pki = TestPki::in_dir(dir.path());
        let mut server = Server::serve("s0", store, api, tasks::Settings::default(), pki.http());
        server._dir = Some(dir);
        wait_system_namespaces(&server.client()).await;
        server
    }

    /// A single-member server on fixed ports over `dir`: stopping it and starting it again
    /// with the same arguments brings the same cluster back on the same address.
    pub async fn start_at(dir: &Path, peer_port: u16, api_port: u16) -> Server {
        // The previous incarnation may still hold a port, or its database, for a moment.
        let deadline = Instant::now() + READY;
        let store = loop {
            match start_single_store(dir, bind_retrying(peer_port).await).await {
                Ok(s) => break s,
                Err(e) => assert!(Instant::now() < deadline, "store restarts: {e:?}"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let api = bind_retrying(api_port).await;
        let pki = TestPki::in_dir(dir);
        let server = Server::serve("s0", store, api, tasks::Settings::default(), pki.http());
        wait_system_namespaces(&server.client()).await;
        server
    }

    /// Starts the API server named `name` over `store` on `api`.
    fn serve(
        name: &str,
        store: Store,
        api: TcpListener,
        mut settings: tasks::Settings,
        mut http: HttpSettings,
    ) -> Server {
        let api_url = format!("https://{}", api.local_addr().unwrap());
        // Secure as in production: service-account tokens, the CA in every namespace.
        http.service_accounts.get_or_insert_with(process_service_accounts);
        settings.cluster_ca.get_or_insert_with(|| process_ca().clone());
        let shutdown = CancellationToken::new();
        let storage = crate::registry::storage::Storage::new(store.clone(), process_encryption());
        let control = ControlPlane::start_configured(storage, api, name, settings, http, shutdown.clone());
        Server { name: name.to_string(), store, control: Some(control), shutdown, api_url, _dir: None }
    }

    /// An administrator's client of this server's Kubernetes API.
    pub fn client(&self) -> kube::Client {
        self.client_as(admin())
    }

    /// A client of this server's API with `credentials`.
    pub fn client_as(&self, credentials: &Credentials) -> kube::Client {
        kube::Client::try_from(credentials.kube_config(self.api_url.parse().unwrap())).unwrap()
    }

    /// A kubeconfig for this server's API as an administrator (for kubectl).
    pub fn kubeconfig_yaml(&self) -> String {
        kubeconfig(&self.api_url)
    }

    /// Stops the API server, then the store member.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(c) = self.control.take() {
            c.stopped().await;
        }
        self.store.shutdown().await;
    }

    fn leading(&self) -> bool {
        self.control.as_ref().is_some_and(|c| c.supervisor.leading.load(Ordering::SeqCst))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Servers over the members of one in-process store cluster (server i on member i, with
/// its name), sharing its fault injector.
pub struct Cluster {
    pub servers: Vec<Server>,
    pub stores: berth_store::testing::Cluster,
}

impl Cluster {
    /// `n` servers with the default task and HTTP settings, ready to serve.
    pub async fn start(n: usize) -> Cluster {
        Self::start_with(n, tasks::Settings::default()).await
    }

    /// A cluster whose leader tasks use `settings` (short timeouts for tests).
    pub async fn start_with(n: usize, settings: tasks::Settings) -> Cluster {
        Self::start_configured(n, settings, |_| {}).await
    }

    /// A cluster whose API ports' settings `tune` changes (short connection timeouts for
    /// tests).
    pub async fn start_configured(n: usize, settings: tasks::Settings, tune: impl Fn(&mut HttpSettings)) -> Cluster {
        let stores = berth_store::testing::Cluster::start(n, |config| {
            config.request_timeout = Duration::from_secs(3);
        })
        .await;
        let pki_dir = tempfile::tempdir().unwrap();
        let pki = TestPki::in_dir(pki_dir.path());
        let mut servers = Vec::new();
        for member in &stores.members {
            let store = member.node.clone().expect("member running");
            let api = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let mut http = pki.http();
            tune(&mut http);
            servers.push(Server::serve(&member.name, store, api, settings.clone(), http));
        }
        servers[0]._dir = Some(pki_dir);
        let cluster = Cluster { servers, stores };
        cluster.leader().await;
        // The leader creates the system namespaces; tests write into "default" at once.
        wait_system_namespaces(&cluster.client()).await;
        cluster
    }

    /// The shared fault injector (cuts links between store members).
    pub fn faults(&self) -> &NetworkFaults {
        &self.stores.faults
    }

    /// The index of the server whose leader tasks run.
    pub async fn leader(&self) -> usize {
        eventually(READY, "a leader running its tasks", async || self.servers.iter().position(Server::leading)).await
    }

    /// A client of server 0.
    pub fn client(&self) -> kube::Client {
        self.servers[0].client()
    }
}

/// A store alone in its Raft group on `peer`, with test timeouts.
async fn start_single_store(dir: &Path, peer: TcpListener) -> berth_store::Result<Store> {
    let peer_url = format!("http://{}", peer.local_addr().unwrap());
    let mut config = StoreConfig::single("s0", dir.to_path_buf(), "http://127.0.0.1:1", &peer_url);
    berth_store::testing::tune(&mut config);
    StoreNode::start(config, peer, Arc::new(NetworkFaults::default())).await
}

/// Binds `port` on loopback, retrying while a previous incarnation still holds it.
async fn bind_retrying(port: u16) -> TcpListener {
    let deadline = Instant::now() + READY;
    loop {
        match TcpListener::bind(("127.0.0.1", port)).await {
            Ok(l) => return l,
            Err(e) => assert!(Instant::now() < deadline, "binding port {port}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the leader has created the system namespaces.
async fn wait_system_namespaces(client: &kube::Client) {
    let namespaces: kube::Api<Namespace> = kube::Api::all(client.clone());
    eventually(READY, "the system namespaces", async || {
        let mut all = true;
        for ns in ["default", "kube-system", "kube-node-lease"] {
            all &= matches!(namespaces.get_opt(ns).await, Ok(Some(_)));
        }
        all.then_some(())
    })
    .await;
}
