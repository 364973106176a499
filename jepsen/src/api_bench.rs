//! `berth-bench-control api-security`: what TLS, authentication and RBAC cost the
//! Kubernetes API. The same build runs twice on loopback — a secure single server, then one
//! with `--insecure` — and the same load hits both: GET of one ConfigMap, LIST of a
//! namespace's 100 ConfigMaps, CREATE of new ones, from `concurrency` kube-rs clients over
//! kept-alive connections, as a user RBAC lets in through a RoleBinding to `edit` (so every
//! request is authenticated and authorized the full way, not by the system:masters
//! shortcut). Then the cost of a new connection: fresh TCP (+ TLS) connections each
//! asking `/version`.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, ListParams, PostParams};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::control_bench::{err, start_servers, BenchResult};

const NAMESPACE: &str = "bench";
const LISTED: usize = 100;

#[derive(Debug, Clone)]
pub struct ApiSecurityConfig {
    pub requests: usize,
    pub concurrency: usize,
    pub connections: usize,
}

/// One operation's figures.
#[derive(Debug, Clone)]
pub struct OpFigures {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub per_second: f64,
}

/// One mode's figures: GET, LIST, CREATE, and a new connection's cost.
#[derive(Debug, Clone)]
pub struct ModeFigures {
    pub ops: Vec<(&'static str, OpFigures)>,
    pub connect: OpFigures,
}

fn config_map(name: &str) -> ConfigMap {
    serde_json::from_value(serde_json::json!({"metadata": {"name": name}, "data": {"k": "v"}})).expect("a ConfigMap")
}

fn figures(h: &Histogram<u64>, elapsed: Duration) -> OpFigures {
    OpFigures {
        p50_ms: h.value_at_quantile(0.5) as f64 / 1000.0,
        p99_ms: h.value_at_quantile(0.99) as f64 / 1000.0,
        per_second: h.len() as f64 / elapsed.as_secs_f64(),
    }
}

/// Runs `op(client, i)` `requests` times over `concurrency` clients.
async fn drive<F, Fut>(clients: &[kube::Client], requests: usize, op: F) -> BenchResult<OpFigures>
where
    F: Fn(kube::Client, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = BenchResult<()>> + Send,
{
    let started = Instant::now();
    let per = requests.div_ceil(clients.len());
    let mut tasks = Vec::new();
    for (w, client) in clients.iter().enumerate() {
        let (client, op) = (client.clone(), op.clone());
        tasks.push(tokio::spawn(async move {
            let mut h = Histogram::<u64>::new(3).expect("histogram");
            for i in 0..per {
                let t = Instant::now();
                op(client.clone(), w * per + i).await?;
                h.record(t.elapsed().as_micros() as u64).expect("in range");
            }
            Ok::<_, crate::HarnessError>(h)
        }));
    }
    let mut all = Histogram::<u64>::new(3).expect("histogram");
    for t in tasks {
        all.add(t.await.map_err(err)??).expect("same bounds");
    }
    Ok(figures(&all, started.elapsed()))
}

/// Opens `n` fresh connections one after another, each asking `/version` (anonymous: the
/// handshake, not the user, is measured).
async fn connections(url: &str, n: usize) -> BenchResult<OpFigures> {
    let authority = url.split("://").nth(1).ok_or_else(|| err(format!("{url}: no authority")))?.to_string();
    let tls = url.starts_with("https://").then(|| crate::pki::anonymous_tls().map(Arc::new)).transpose()?;
    let request = format!("GET /version HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    let mut h = Histogram::<u64>::new(3).expect("histogram");
    let started = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        let tcp = tokio::net::TcpStream::connect(&authority).await?;
        tcp.set_nodelay(true)?;
        let mut reply = Vec::new();
        match &tls {
            Some(config) => {
                let name = rustls::pki_types::ServerName::try_from("localhost").expect("a DNS name");
                let mut s = tokio_rustls::TlsConnector::from(config.clone()).connect(name, tcp).await?;
                s.write_all(request.as_bytes()).await?;
                let _ = s.read_to_end(&mut reply).await;
            }
            None => {
                let mut s = tcp;
                s.write_all(request.as_bytes()).await?;
                s.read_to_end(&mut reply).await?;
            }
        }
        if !reply.starts_with(b"HTTP/1.1 200") {
            return Err(err(format!("GET /version: {}", String::from_utf8_lossy(&reply))));
        }
        h.record(t.elapsed().as_micros() as u64).expect("in range");
    }
    Ok(figures(&h, started.elapsed()))
}

/// One mode: a fresh server (`--insecure` or not), the namespace, the load.
async fn mode(dir: &Path, insecure: bool, cfg: &ApiSecurityConfig) -> BenchResult<ModeFigures> {
    let extra: Vec<String> = if insecure { vec!["--insecure".into()] } else { vec![] };
    let cluster = start_servers(dir, 1, &extra).await?;
    let url = cluster.members[0].api_url.clone();
    let admin = kube::Client::try_from(crate::pki::admin_config(&url)?).map_err(err)?;
    let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": NAMESPACE}})).map_err(err)?;
    Api::<Namespace>::all(admin.clone()).create(&PostParams::default(), &ns).await.map_err(err)?;
    let binding = serde_json::json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "bench-edit", "namespace": NAMESPACE},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
        "subjects": [{"kind": "User", "name": "bench-user", "apiGroup": "rbac.authorization.k8s.io"}],
    });
    let bindings: Api<k8s_openapi::api::rbac::v1::RoleBinding> = Api::namespaced(admin.clone(), NAMESPACE);
    bindings.create(&PostParams::default(), &serde_json::from_value(binding).map_err(err)?).await.map_err(err)?;
    let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), NAMESPACE);
    for i in 0..LISTED {
        cms.create(&PostParams::default(), &config_map(&format!("listed-{i}"))).await.map_err(err)?;
    }
    let clients: Vec<kube::Client> = (0..cfg.concurrency)
        .map(|_| {
            let mut config = crate::pki::user_config(&url, "bench-user", &[])?;
            config.read_timeout = Some(Duration::from_secs(30));
            kube::Client::try_from(config).map_err(err)
        })
        .collect::<BenchResult<_>>()?;
    let api = |c: kube::Client| Api::<ConfigMap>::namespaced(c, NAMESPACE);
    // Warm every client's connection first.
    drive(&clients, cfg.concurrency, move |c, _| async move { api(c).get("listed-0").await.map(drop).map_err(err) })
        .await?;
    let get =
        drive(&clients, cfg.requests, move |c, _| async move { api(c).get("listed-0").await.map(drop).map_err(err) })
            .await?;
    let list_requests = (cfg.requests / 10).max(cfg.concurrency);
    let list = drive(&clients, list_requests, move |c, _| async move {
        api(c).list(&ListParams::default()).await.map(drop).map_err(err)
    })
    .await?;
    let create = drive(&clients, cfg.requests, move |c, i| async move {
        api(c).create(&PostParams::default(), &config_map(&format!("new-{i}"))).await.map(drop).map_err(err)
    })
    .await?;
    let connect = connections(&url, cfg.connections).await?;
    drop(cluster);
    Ok(ModeFigures { ops: vec![("GET", get), ("LIST (100)", list), ("CREATE", create)], connect })
}

/// Both modes, secure first, in one run.
pub async fn api_security(dir: &Path, cfg: &ApiSecurityConfig) -> BenchResult<(ModeFigures, ModeFigures)> {
    let secure = mode(&dir.join("secure"), false, cfg).await?;
    let insecure = mode(&dir.join("insecure"), true, cfg).await?;
    Ok((secure, insecure))
}

pub fn print(cfg: &ApiSecurityConfig, secure: &ModeFigures, insecure: &ModeFigures) {
    println!(
        "API cost of TLS + authentication + RBAC: {} requests per op ({} for LIST), {} clients with keep-alive; \
         one server; user bound to `edit`",
        cfg.requests,
        (cfg.requests / 10).max(cfg.concurrency),
        cfg.concurrency
    );
    println!(
        "{:<12} {:>10} {:>10} {:>10} {:>12} {:>12} {:>12} {:>9}",
        "op", "p50 ms", "p99 ms", "req/s", "insec p50", "insec p99", "insec req/s", "tput ×"
    );
    let row = |name: &str, s: &OpFigures, i: &OpFigures| {
        println!(
            "{:<12} {:>10.2} {:>10.2} {:>10.0} {:>12.2} {:>12.2} {:>12.0} {:>9.2}",
            name,
            s.p50_ms,
            s.p99_ms,
            s.per_second,
            i.p50_ms,
            i.p99_ms,
            i.per_second,
            s.per_second / i.per_second
        );
    };
    for ((name, s), (_, i)) in secure.ops.iter().zip(&insecure.ops) {
        row(name, s, i);
    }
    row(&format!("new conn ({})", cfg.connections), &secure.connect, &insecure.connect);
}
