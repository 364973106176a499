//! `berth-bench-control crd`: custom objects against the built-in kind closest to them, on
//! the same server. A CRD whose objects carry what a ConfigMap does (a map of strings,
//! validated by a structural schema) is registered; then, kind after kind (in ABBA order,
//! two rounds each), `objects` objects are CREATEd, GET, merge-PATCHed and DELETEd from
//! `concurrency` connections, and LISTed once — throughput and median latency per verb,
//! and the custom/built-in ratios.
//! Last, `cleanup_objects` custom objects are created and their CRD deleted: the time
//! until the definition and every object are gone.

use std::path::Path;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::control_bench::{err, start_servers, BenchResult};
use crate::protobuf_bench::{patient_client, send};

const NAMESPACE: &str = "bench";
const JSON: &str = "application/json";
const VERBS: [&str; 4] = ["CREATE", "GET", "PATCH", "DELETE"];

#[derive(Debug, Clone)]
pub struct CrdBenchConfig {
    pub objects: usize,
    pub concurrency: usize,
    pub cleanup_objects: usize,
}

/// One verb's figures.
#[derive(Debug, Clone, Default)]
pub struct VerbFigures {
    pub per_second: f64,
    pub p50_ms: f64,
}

/// One kind's figures: the four verbs in [`VERBS`] order, and the LIST of them all.
#[derive(Debug, Clone, Default)]
pub struct KindFigures {
    pub verbs: Vec<VerbFigures>,
    pub list_ms: f64,
}

#[derive(Debug, Clone, Default)]
pub struct CrdFigures {
    pub config_maps: KindFigures,
    pub custom: KindFigures,
    /// From the CRD's DELETE to its disappearance with its objects.
    pub cleanup_seconds: f64,
}

const CRD: &str = r#"{
  "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
  "metadata": {"name": "settings.bench.example.com"},
  "spec": {"group": "bench.example.com", "scope": "Namespaced",
    "names": {"plural": "settings", "singular": "setting", "kind": "Setting"},
    "versions": [{"name": "v1", "served": true, "storage": true,
      "schema": {"openAPIV3Schema": {"type": "object", "properties": {
        "data": {"type": "object", "additionalProperties": {"type": "string"}}}}}}]}}"#;

/// A kind under test: where its objects live and what one looks like.
struct Kind {
    path: String,
    object: fn(usize) -> Value,
}

fn config_map(i: usize) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("o-{i}")},
           "data": {"key": "value", "index": i.to_string()}})
}

fn setting(i: usize) -> Value {
    json!({"apiVersion": "bench.example.com/v1", "kind": "Setting", "metadata": {"name": format!("o-{i}")},
           "data": {"key": "value", "index": i.to_string()}})
}

/// Runs `verb` on objects `0..n` from every writer; the verb's figures.
async fn run_verb(writers: &[kube::Client], kind: &Kind, verb: &'static str, n: usize) -> BenchResult<VerbFigures> {
    let per = n.div_ceil(writers.len());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (w, client) in writers.iter().enumerate() {
        let (client, path, object) = (client.clone(), kind.path.clone(), kind.object);
        tasks.push(tokio::spawn(async move {
            let mut h = Histogram::<u64>::new(3).expect("histogram");
            for i in (w * per..(w + 1) * per).filter(|i| *i < n) {
                let one = format!("{path}/o-{i}");
                let t = Instant::now();
                match verb {
                    "CREATE" => {
                        send(&client, "POST", &path, JSON, Some(serde_json::to_vec(&object(i)).map_err(err)?)).await?
                    }
                    "GET" => send(&client, "GET", &one, JSON, None).await?,
                    "PATCH" => patch(&client, &one, i).await?,
                    _ => send(&client, "DELETE", &one, JSON, None).await?,
                };
                h.record(t.elapsed().as_micros() as u64).expect("in range");
            }
            Ok::<_, crate::HarnessError>(h)
        }));
    }
    let mut all = Histogram::<u64>::new(3).expect("histogram");
    for t in tasks {
        all.add(t.await.map_err(err)??).expect("same bounds");
    }
    Ok(VerbFigures {
        per_second: all.len() as f64 / started.elapsed().as_secs_f64(),
        p50_ms: all.value_at_quantile(0.5) as f64 / 1000.0,
    })
}

async fn patch(client: &kube::Client, path: &str, i: usize) -> BenchResult<Vec<u8>> {
    let body = serde_json::to_vec(&json!({"data": {"patched": i.to_string()}})).map_err(err)?;
    let request = http::Request::builder()
        .method("PATCH")
        .uri(path)
        .header("content-type", "application/merge-patch+json")
        .body(kube::client::Body::from(body))
        .map_err(err)?;
    let response = client.send(request).await.map_err(err)?;
    if !response.status().is_success() {
        return Err(err(format!("PATCH {path}: {}", response.status())));
    }
    Ok(Vec::new())
}

async fn measure(writers: &[kube::Client], kind: &Kind, n: usize) -> BenchResult<KindFigures> {
    let mut figures = KindFigures::default();
    for verb in VERBS {
        if verb == "DELETE" {
            let started = Instant::now();
            let listed: Value =
                serde_json::from_slice(&send(&writers[0], "GET", &kind.path, JSON, None).await?).map_err(err)?;
            figures.list_ms = started.elapsed().as_secs_f64() * 1000.0;
            // Only the benchmark's objects (the namespace also holds kube-root-ca.crt).
            let ours = |o: &&Value| o["metadata"]["name"].as_str().is_some_and(|n| n.starts_with("o-"));
            let items = listed["items"].as_array().map_or(0, |items| items.iter().filter(ours).count());
            if items != n {
                return Err(err(format!("LIST {} gave {items} objects, not {n}", kind.path)));
            }
        }
        figures.verbs.push(run_verb(writers, kind, verb, n).await?);
    }
    Ok(figures)
}

/// The mean of two rounds' figures.
fn mean(a: &KindFigures, b: &KindFigures) -> KindFigures {
    KindFigures {
        verbs: a
            .verbs
            .iter()
            .zip(&b.verbs)
            .map(|(x, y)| VerbFigures {
                per_second: (x.per_second + y.per_second) / 2.0,
                p50_ms: (x.p50_ms + y.p50_ms) / 2.0,
            })
            .collect(),
        list_ms: (a.list_ms + b.list_ms) / 2.0,
    }
}

/// Waits (bounded) until `path` answers 404.
async fn until_gone(client: &kube::Client, path: &str, limit: Duration) -> BenchResult<()> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if send(client, "GET", path, JSON, None).await.is_err() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(err(format!("{path} still there after {limit:?}")))
}

pub async fn crd_bench(dir: &Path, cfg: &CrdBenchConfig) -> BenchResult<CrdFigures> {
    let cluster = start_servers(dir, 1, &[]).await?;
    let url = cluster.members[0].api_url.clone();
    let connect = || patient_client(&url);
    let admin = connect()?;
    let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}});
    send(&admin, "POST", "/api/v1/namespaces", JSON, Some(serde_json::to_vec(&namespace).map_err(err)?)).await?;
    let crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
    send(&admin, "POST", crds, JSON, Some(CRD.as_bytes().to_vec())).await?;
    let custom_path = format!("/apis/bench.example.com/v1/namespaces/{NAMESPACE}/settings");
    let deadline = Instant::now() + Duration::from_secs(10);
    while send(&admin, "GET", &custom_path, JSON, None).await.is_err() {
        if Instant::now() > deadline {
            return Err(err("the CRD was not served within 10 s"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let writers: Vec<kube::Client> = (0..cfg.concurrency).map(|_| connect()).collect::<BenchResult<_>>()?;
    let config_maps = Kind { path: format!("/api/v1/namespaces/{NAMESPACE}/configmaps"), object: config_map };
    let custom = Kind { path: custom_path.clone(), object: setting };
    // A warm-up round, so the kind measured first does not also pay for a cold server;
    // then ConfigMaps, custom, custom, ConfigMaps (each kind's figures are the mean of its
    // two rounds), so a drift of the server over the run (a growing store, compaction)
    // weighs on both kinds alike.
    measure(&writers, &config_maps, cfg.objects.div_ceil(4)).await?;
    let cm_first = measure(&writers, &config_maps, cfg.objects).await?;
    let custom_first = measure(&writers, &custom, cfg.objects).await?;
    let custom_second = measure(&writers, &custom, cfg.objects).await?;
    let cm_second = measure(&writers, &config_maps, cfg.objects).await?;
    let mut figures = CrdFigures {
        config_maps: mean(&cm_first, &cm_second),
        custom: mean(&custom_first, &custom_second),
        cleanup_seconds: 0.0,
    };

    run_verb(&writers, &custom, "CREATE", cfg.cleanup_objects).await?;
    let started = Instant::now();
    send(&admin, "DELETE", &format!("{crds}/settings.bench.example.com"), JSON, None).await?;
    until_gone(&admin, &format!("{crds}/settings.bench.example.com"), Duration::from_secs(600)).await?;
    until_gone(&admin, &custom_path, Duration::from_secs(60)).await?;
    figures.cleanup_seconds = started.elapsed().as_secs_f64();
    // Nothing of the old objects survives: the same CRD again starts empty.
    send(&admin, "POST", crds, JSON, Some(CRD.as_bytes().to_vec())).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(bytes) = send(&admin, "GET", &custom_path, JSON, None).await {
            let listed: Value = serde_json::from_slice(&bytes).map_err(err)?;
            let left = listed["items"].as_array().map_or(0, Vec::len);
            if left != 0 {
                return Err(err(format!("{left} objects outlived their CRD")));
            }
            break;
        }
        if Instant::now() > deadline {
            return Err(err("the re-created CRD was not served within 10 s"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(cluster);
    Ok(figures)
}

pub fn print(cfg: &CrdBenchConfig, f: &CrdFigures) {
    println!(
        "Custom objects vs ConfigMaps on one secure server: {} objects per verb over {} connections",
        cfg.objects, cfg.concurrency
    );
    println!("{:<12} {:>10} {:>14} {:>14} {:>10}", "kind", "verb", "req/s", "p50 ms", "");
    for (name, k) in [("configmap", &f.config_maps), ("custom", &f.custom)] {
        for (verb, v) in VERBS.iter().zip(&k.verbs) {
            println!("{name:<12} {verb:>10} {:>14.0} {:>14.2}", v.per_second, v.p50_ms);
        }
        println!("{name:<12} {:>10} {:>14} {:>14.1} (all {} objects, ms)", "LIST", "", k.list_ms, cfg.objects);
    }
    let ratios: Vec<String> = VERBS
        .iter()
        .zip(f.custom.verbs.iter().zip(&f.config_maps.verbs))
        .map(|(verb, (c, b))| format!("{verb} {:.2}x", c.per_second / b.per_second))
        .collect();
    println!(
        "custom/configmap throughput: {}; LIST time {:.2}x",
        ratios.join(", "),
        f.custom.list_ms / f.config_maps.list_ms
    );
    println!(
        "deleting the CRD with {} objects: gone, objects included, in {:.1} s",
        cfg.cleanup_objects, f.cleanup_seconds
    );
}
