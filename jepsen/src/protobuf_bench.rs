//! `berth-bench-control protobuf`: Kubernetes protobuf against JSON on the same server, for
//! kube-apiserver's own reason to have protobuf — big LISTs and many writes. One secure
//! server holds `pods` Pods (three containers each, labels, requests, an env list: about
//! the size of a real pod); then, alternating the two encodings trial by trial so both see
//! the same machine, a client
//! * LISTs them all: time to the last byte, then the client's decode into typed objects
//!   (k8s-openapi's `PodList` from JSON, k8s-pb's from protobuf — what a typed client pays);
//! * CREATEs ConfigMaps from `concurrency` connections, the body and the answer in one
//!   encoding, for throughput.

use std::path::Path;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use http_body_util::BodyExt;
use prost::Message;
use serde_json::{json, Value};

use crate::control_bench::{err, start_servers, BenchResult};

const NAMESPACE: &str = "bench";
const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";
const JSON: &str = "application/json";

#[derive(Debug, Clone)]
pub struct ProtobufBenchConfig {
    pub pods: usize,
    pub list_trials: usize,
    pub creates: usize,
    pub concurrency: usize,
}

/// One encoding's LIST figures (medians over the trials).
#[derive(Debug, Clone, Default)]
pub struct ListFigures {
    pub bytes: usize,
    pub transfer_ms: f64,
    pub decode_ms: f64,
}

/// One encoding's figures.
#[derive(Debug, Clone, Default)]
pub struct EncodingFigures {
    pub list: ListFigures,
    pub create_per_second: f64,
    pub create_p50_ms: f64,
}

fn pod(i: usize) -> Value {
    let container = |name: &str| {
        json!({"name": name, "image": format!("registry.local/{name}:1.{i}"),
               "ports": [{"containerPort": 8080, "name": "http"}],
               "env": [{"name": "MODE", "value": "production"}, {"name": "INDEX", "value": i.to_string()}],
               "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}}})
    };
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": format!("pod-{i}"), "labels": {"app": "bench", "shard": (i % 10).to_string()}},
           "spec": {"containers": [container("app"), container("sidecar"), container("logger")]}})
}

fn config_map(i: usize, encoding: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": format!("{encoding}-{i}")}, "data": {"key": "value", "index": i.to_string()}})
}

fn body(value: &Value, content_type: &str) -> BenchResult<Vec<u8>> {
    if content_type == PROTOBUF {
        berth_proto::protobuf::encode_object(value).map_err(err)
    } else {
        serde_json::to_vec(value).map_err(err)
    }
}

/// Sends one request; the answer's bytes after checking the status.
pub(crate) async fn send(
    client: &kube::Client,
    method: &str,
    path: &str,
    encoding: &str,
    payload: Option<Vec<u8>>,
) -> BenchResult<Vec<u8>> {
    let mut request = http::Request::builder().method(method).uri(path).header("accept", encoding);
    if payload.is_some() {
        request = request.header("content-type", encoding);
    }
    let request = request.body(kube::client::Body::from(payload.unwrap_or_default())).map_err(err)?;
    let response = client.send(request).await.map_err(err)?;
    let status = response.status();
    let bytes = response.into_body().collect().await.map_err(err)?.to_bytes().to_vec();
    if !status.is_success() {
        return Err(err(format!("{method} {path}: {status}: {}", String::from_utf8_lossy(&bytes))));
    }
    Ok(bytes)
}

/// Decodes a LIST answer into typed pods, as a typed client would; the number of pods.
fn decode_list(bytes: &[u8], encoding: &str) -> BenchResult<usize> {
    if encoding == PROTOBUF {
        let rest = bytes.strip_prefix(b"k8s\0").ok_or_else(|| err("no k8s\\0 magic"))?;
        let unknown = k8s_pb::apimachinery::pkg::runtime::Unknown::decode(rest).map_err(err)?;
        let list = k8s_pb::api::core::v1::PodList::decode(unknown.raw.unwrap_or_default().as_slice()).map_err(err)?;
        Ok(list.items.len())
    } else {
        let list: k8s_openapi::List<k8s_openapi::api::core::v1::Pod> = serde_json::from_slice(bytes).map_err(err)?;
        Ok(list.items.len())
    }
}

pub(crate) fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or_default()
}

/// An admin client of `url` for requests that may take long (big LISTs).
pub(crate) fn patient_client(url: &str) -> BenchResult<kube::Client> {
    let mut config = crate::pki::admin_config(url)?;
    config.read_timeout = Some(Duration::from_secs(120));
    kube::Client::try_from(config).map_err(err)
}

pub async fn protobuf_bench(dir: &Path, cfg: &ProtobufBenchConfig) -> BenchResult<(EncodingFigures, EncodingFigures)> {
    let cluster = start_servers(dir, 1, &[]).await?;
    let url = cluster.members[0].api_url.clone();
    let connect = || patient_client(&url);
    let admin = connect()?;
    send(
        &admin,
        "POST",
        "/api/v1/namespaces",
        JSON,
        Some(body(
            &json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": NAMESPACE}}),
            JSON,
        )?),
    )
    .await?;
    let pods_path = format!("/api/v1/namespaces/{NAMESPACE}/pods");
    let writers: Vec<kube::Client> = (0..cfg.concurrency).map(|_| connect()).collect::<BenchResult<_>>()?;
    let per = cfg.pods.div_ceil(writers.len());
    let mut tasks = Vec::new();
    for (w, client) in writers.iter().enumerate() {
        let (client, path, pods) = (client.clone(), pods_path.clone(), cfg.pods);
        tasks.push(tokio::spawn(async move {
            for i in (w * per..(w + 1) * per).filter(|i| *i < pods) {
                send(&client, "POST", &path, JSON, Some(body(&pod(i), JSON)?)).await?;
            }
            Ok::<_, crate::HarnessError>(())
        }));
    }
    for t in tasks {
        t.await.map_err(err)??;
    }

    let mut figures = [EncodingFigures::default(), EncodingFigures::default()];
    let encodings = [JSON, PROTOBUF];
    let mut samples: [(Vec<f64>, Vec<f64>, usize); 2] = Default::default();
    for _ in 0..cfg.list_trials {
        for (k, encoding) in encodings.iter().enumerate() {
            let started = Instant::now();
            let bytes = send(&admin, "GET", &pods_path, encoding, None).await?;
            let transfer = started.elapsed();
            let decoded = Instant::now();
            let n = decode_list(&bytes, encoding)?;
            let decode = decoded.elapsed();
            if n != cfg.pods {
                return Err(err(format!("LIST in {encoding} gave {n} pods, not {}", cfg.pods)));
            }
            samples[k].0.push(transfer.as_secs_f64() * 1000.0);
            samples[k].1.push(decode.as_secs_f64() * 1000.0);
            samples[k].2 = bytes.len();
        }
    }
    for (k, (transfer, decode, bytes)) in samples.into_iter().enumerate() {
        figures[k].list = ListFigures { bytes, transfer_ms: median(transfer), decode_ms: median(decode) };
    }

    let cms_path = format!("/api/v1/namespaces/{NAMESPACE}/configmaps");
    for (k, encoding) in encodings.iter().enumerate() {
        let per = cfg.creates.div_ceil(writers.len());
        let started = Instant::now();
        let mut tasks = Vec::new();
        for (w, client) in writers.iter().enumerate() {
            let (client, path, encoding) = (client.clone(), cms_path.clone(), encoding.to_string());
            let prefix = if encoding == PROTOBUF { "pb" } else { "json" };
            tasks.push(tokio::spawn(async move {
                let mut h = Histogram::<u64>::new(3).expect("histogram");
                for i in w * per..(w + 1) * per {
                    let payload = body(&config_map(i, prefix), &encoding)?;
                    let t = Instant::now();
                    send(&client, "POST", &path, &encoding, Some(payload)).await?;
                    h.record(t.elapsed().as_micros() as u64).expect("in range");
                }
                Ok::<_, crate::HarnessError>(h)
            }));
        }
        let mut all = Histogram::<u64>::new(3).expect("histogram");
        for t in tasks {
            all.add(t.await.map_err(err)??).expect("same bounds");
        }
        figures[k].create_per_second = all.len() as f64 / started.elapsed().as_secs_f64();
        figures[k].create_p50_ms = all.value_at_quantile(0.5) as f64 / 1000.0;
    }
    drop(cluster);
    let [json_figures, protobuf_figures] = figures;
    Ok((json_figures, protobuf_figures))
}

pub fn print(cfg: &ProtobufBenchConfig, json: &EncodingFigures, protobuf: &EncodingFigures) {
    println!(
        "Kubernetes protobuf vs JSON on one secure server: LIST of {} pods (median of {} trials each, alternating), \
         {} ConfigMap CREATEs over {} connections",
        cfg.pods, cfg.list_trials, cfg.creates, cfg.concurrency
    );
    println!(
        "{:<10} {:>12} {:>14} {:>16} {:>14} {:>14} {:>16}",
        "encoding", "LIST bytes", "LIST fetch ms", "client decode ms", "LIST total ms", "CREATE req/s", "CREATE p50 ms"
    );
    for (name, f) in [("json", json), ("protobuf", protobuf)] {
        println!(
            "{:<10} {:>12} {:>14.1} {:>16.1} {:>14.1} {:>14.0} {:>16.2}",
            name,
            f.list.bytes,
            f.list.transfer_ms,
            f.list.decode_ms,
            f.list.transfer_ms + f.list.decode_ms,
            f.create_per_second,
            f.create_p50_ms
        );
    }
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    println!(
        "protobuf/json: LIST bytes {:.2}x, fetch {:.2}x, decode {:.2}x, total {:.2}x; CREATE throughput {:.2}x",
        ratio(protobuf.list.bytes as f64, json.list.bytes as f64),
        ratio(protobuf.list.transfer_ms, json.list.transfer_ms),
        ratio(protobuf.list.decode_ms, json.list.decode_ms),
        ratio(protobuf.list.transfer_ms + protobuf.list.decode_ms, json.list.transfer_ms + json.list.decode_ms),
        ratio(protobuf.create_per_second, json.create_per_second)
    );
}
