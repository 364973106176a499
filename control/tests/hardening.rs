//! Hostile and malformed input on the Kubernetes API port (issue 15): amplifying patches,
//! deep YAML, slow and oversized requests, writes that change nothing or try to change an
//! object's identity, and the small ways bad input used to be accepted. Requests are raw
//! HTTP so the exact status code, `Status` body and connection behaviour are visible.

use std::time::{Duration, Instant};

use berth_control::testing::Cluster;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// One HTTP response: status, headers (lower-case names), body.
struct Reply {
    code: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
    fn header(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect()
    }
}

fn addr(base: &str) -> &str {
    base.trim_start_matches("https://")
}

fn parse_reply(raw: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no response head in {text:?}"));
    let mut lines = head.lines();
    let code = lines.next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers.iter().any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, after)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            out.push_str(&after[..n]);
            rest = &after[n + 2..];
        }
        out
    } else {
        body.to_string()
    };
    Reply { code, headers, body }
}

/// Sends one request (`Connection: close`) and reads the whole reply.
async fn http(base: &str, method: &str, path: &str, content_type: &str, body: &[u8]) -> Reply {
    let mut s = berth_control::testing::connect(base).await;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        addr(base),
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    // The server may answer (413) before taking the whole body: a failed write is fine.
    let _ = s.write_all(body).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut out)).await;
    parse_reply(&out)
}

async fn get(base: &str, path: &str) -> Reply {
    http(base, "GET", path, "application/json", b"").await
}

const CMS: &str = "/api/v1/namespaces/default/configmaps";
const DEPLOYS: &str = "/apis/apps/v1/namespaces/default/deployments";

fn deployment(name: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}},
        },
    })
}

fn rv(v: &Value) -> &str {
    v["metadata"]["resourceVersion"].as_str().unwrap()
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A: patches cannot amplify themselves into huge objects, whatever the patch kind.
#[tokio::test(flavor = "multi_thread")]
async fn patches_cannot_build_huge_objects() {
    let cluster = Cluster::start(1).await;
    let base = &cluster.servers[0].api_url;
    let created =
        http(base, "POST", CMS, "application/json", br#"{"metadata": {"name": "cm"}, "data": {"a": "b"}}"#).await;
    assert_eq!(created.code, 201, "{}", created.body);
    let before = created.json();

    // The probe's bomb: a small value, then copies of the whole list into itself, each one
    // doubling it (into a field the typed check would drop, so only the patch sees it).
    let mut ops = vec![json!({"op": "add", "path": "/bogus", "value": ["x".repeat(1024)]})];
    for _ in 0..17 {
        ops.push(json!({"op": "copy", "from": "/bogus", "path": "/bogus/-"}));
    }
    let rss = rss_kib();
    let started = Instant::now();
    let r =
        http(base, "PATCH", &format!("{CMS}/cm"), "application/json-patch+json", &serde_json::to_vec(&ops).unwrap())
            .await;
    let grown_mib = rss_kib().saturating_sub(rss) / 1024;
    eprintln!("patch bomb: {} in {:?}, RSS +{grown_mib} MiB", r.code, started.elapsed());
    assert_eq!(r.code, 422, "{}", r.body);
    assert!(r.json()["message"].as_str().unwrap().contains("accumulated size increase of copy"), "{}", r.body);
    assert!(grown_mib < 100, "the patch bomb grew the server by {grown_mib} MiB");

    // More than 10,000 operations: 413, as kube-apiserver.
    let many = vec![json!({"op": "test", "path": "/metadata/name", "value": "cm"}); 10_001];
    let r =
        http(base, "PATCH", &format!("{CMS}/cm"), "application/json-patch+json", &serde_json::to_vec(&many).unwrap())
            .await;
    assert_eq!(r.code, 413, "{}", r.body);
    assert_eq!(r.json()["reason"], "RequestEntityTooLarge");
    assert_eq!(
        r.json()["message"],
        "Request entity too large: The allowed maximum operations in a JSON patch is 10000, got 10001"
    );

    // A merge patch whose result is over the limit, the excess in a field the typed check
    // drops: refused before that, not stored small.
    let big = json!({"metadata": {"name": "big"}, "data": {"a": "y".repeat(900 * 1024)}});
    assert_eq!(http(base, "POST", CMS, "application/json", big.to_string().as_bytes()).await.code, 201);
    let bloat = json!({"bogus": "z".repeat(2400 * 1024)}).to_string();
    let r = http(base, "PATCH", &format!("{CMS}/big"), "application/merge-patch+json", bloat.as_bytes()).await;
    assert_eq!(r.code, 413, "{}", &r.body[..r.body.len().min(300)]);
    assert_eq!(r.json()["message"], "Request entity too large: limit is 3145728");

    let after = get(base, &format!("{CMS}/cm")).await.json();
    assert_eq!(rv(&after), rv(&before), "refused patches write nothing");
}

/// B: deep YAML is refused before the YAML parser sees it, and does not stall other requests.
#[tokio::test(flavor = "multi_thread")]
async fn deep_yaml_is_refused_quickly() {
    let cluster = Cluster::start(1).await;
    let base = cluster.servers[0].api_url.clone();
    let bomb = "[".repeat(200 * 1024);
    let started = Instant::now();
    let slow = {
        let base = base.clone();
        tokio::spawn(async move { http(&base, "POST", CMS, "application/yaml", bomb.as_bytes()).await })
    };
    // Another request meanwhile is answered promptly.
    let other = get(&base, "/api/v1/namespaces/default").await;
    assert_eq!(other.code, 200);
    let r = slow.await.unwrap();
    let took = started.elapsed();
    eprintln!("YAML bomb: {} in {took:?}", r.code);
    assert_eq!(r.code, 400, "{}", r.body);
    assert_eq!(r.json()["message"], "error decoding YAML: exceeded max depth of 128");
    assert!(took < Duration::from_secs(2), "{took:?}");
    // Apply bodies are YAML too.
    let r = http(
        &base,
        "PATCH",
        &format!("{CMS}/x?fieldManager=m"),
        "application/apply-patch+yaml",
        "{".repeat(1000).as_bytes(),
    )
    .await;
    assert_eq!(r.code, 400, "{}", r.body);
    // Ordinary YAML still works.
    let ok = http(&base, "POST", CMS, "application/yaml", b"metadata:\n  name: from-yaml\ndata:\n  k: v\n").await;
    assert_eq!(ok.code, 201, "{}", ok.body);
}

fn quick_http(http: &mut berth_control::HttpSettings) {
    http.conn.header_read = Duration::from_secs(1);
    http.conn.idle = Duration::from_secs(2);
    http.body.read_timeout = Duration::from_secs(1);
}

/// Reads until EOF; how long that took, or None if the connection stayed open.
async fn closed_within(s: &mut (impl AsyncRead + Unpin), limit: Duration) -> Option<(Duration, Vec<u8>)> {
    let started = Instant::now();
    let mut out = Vec::new();
    match tokio::time::timeout(limit, s.read_to_end(&mut out)).await {
        Ok(_) => Some((started.elapsed(), out)),
        Err(_) => None,
    }
}

/// C: slow clients are disconnected, oversized bodies refused up front, long watches kept.
#[tokio::test(flavor = "multi_thread")]
async fn slow_and_oversized_requests_are_cut_off() {
    let cluster = Cluster::start_configured(1, Default::default(), quick_http).await;
    let base = &cluster.servers[0].api_url;

    // Half a request head: dropped after the 1 s header timeout.
    let mut s = berth_control::testing::connect(base).await;
    s.write_all(b"GET /api HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.unwrap();
    let (took, _) = closed_within(&mut s, Duration::from_secs(5)).await.expect("a partial head is cut off");
    assert!(took >= Duration::from_millis(800) && took < Duration::from_secs(3), "{took:?}");

    // An idle keep-alive connection is closed after the 2 s idle timeout, not the head timeout.
    let mut s = berth_control::testing::connect(base).await;
    s.write_all(b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let (took, out) = closed_within(&mut s, Duration::from_secs(6)).await.expect("an idle connection is closed");
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 200"), "{}", String::from_utf8_lossy(&out));
    assert!(took >= Duration::from_millis(1800) && took < Duration::from_secs(4), "{took:?}");

    // Content-Length: 1 GiB with 10 bytes sent: 413 at once, as a Status.
    let mut s = berth_control::testing::connect(base).await;
    let started = Instant::now();
    s.write_all(
        format!("POST {CMS} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1073741824\r\n\r\n0123456789")
            .as_bytes(),
    )
    .await
    .unwrap();
    let (_, out) = closed_within(&mut s, Duration::from_secs(5)).await.expect("answered and closed");
    let r = parse_reply(&out);
    assert!(started.elapsed() < Duration::from_millis(900), "{:?}", started.elapsed());
    assert_eq!(r.code, 413);
    assert_eq!(r.json()["reason"], "RequestEntityTooLarge");
    assert_eq!(r.json()["message"], "Request entity too large: limit is 3145728");

    // A body announced but not sent: 408 after the 1 s body timeout.
    let mut s = berth_control::testing::connect(base).await;
    s.write_all(
        format!(
            "POST {CMS} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"a\""
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let (took, out) = closed_within(&mut s, Duration::from_secs(5)).await.expect("a stalled body is answered");
    assert_eq!(parse_reply(&out).code, 408, "{}", String::from_utf8_lossy(&out));
    assert!(took >= Duration::from_millis(800), "{took:?}");

    // A watch with nothing to say for longer than the idle timeout stays open.
    let mut w = berth_control::testing::connect(base).await;
    w.write_all(format!("GET {CMS}?watch=1&fieldSelector=metadata.name%3Dlate HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let r = http(base, "POST", CMS, "application/json", br#"{"metadata": {"name": "late"}}"#).await;
    assert_eq!(r.code, 201);
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !String::from_utf8_lossy(&seen).contains("\"late\"") {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline.into(), w.read(&mut buf)).await.expect("the watch event").unwrap();
        assert!(n > 0, "the watch was closed: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
}

/// D: writes that change nothing do not write (same resourceVersion, same generation).
#[tokio::test(flavor = "multi_thread")]
async fn writes_that_change_nothing_do_not_write() {
    let cluster = Cluster::start(1).await;
    let base = &cluster.servers[0].api_url;
    let created = http(base, "POST", DEPLOYS, "application/json", deployment("web").to_string().as_bytes()).await;
    assert_eq!(created.code, 201, "{}", created.body);
    let url = format!("{DEPLOYS}/web");
    // The deployment controller writes status after the create: wait until it is done.
    let mut d = created.json();
    loop {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let now = get(base, &url).await.json();
        if rv(&now) == rv(&d) {
            break;
        }
        d = now;
    }
    let (rv0, gen0) = (rv(&d).to_string(), d["metadata"]["generation"].clone());
    let same = |r: &Reply, what: &str| {
        assert_eq!(r.code, 200, "{what}: {}", r.body);
        let o = r.json();
        assert_eq!(rv(&o), rv0, "{what} wrote");
        assert_eq!(o["metadata"]["generation"], gen0, "{what} bumped generation");
    };
    let r = http(base, "PATCH", &url, "application/merge-patch+json", br#"{"spec": {"bogus": 1}}"#).await;
    same(&r, "merge patch of an unknown field");
    let r = http(base, "PATCH", &url, "application/strategic-merge-patch+json", br#"{"spec": {"replicas": 1}}"#).await;
    same(&r, "strategic patch to the current value");
    let r = http(
        base,
        "PATCH",
        &url,
        "application/json-patch+json",
        br#"[{"op": "replace", "path": "/spec/replicas", "value": 1}]"#,
    )
    .await;
    same(&r, "json patch to the current value");
    let r = http(base, "PUT", &url, "application/json", d.to_string().as_bytes()).await;
    same(&r, "PUT of the object as read");
    let r = http(base, "PUT", &format!("{url}/status"), "application/json", d.to_string().as_bytes()).await;
    same(&r, "PUT of the status as read");
    // Apply: the first takes ownership (a real change), the same apply again is a no-op.
    let cfg = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"x": "y"}}});
    let (apply_url, cfg_body) = (format!("{url}?fieldManager=m"), cfg.to_string());
    let apply = || http(base, "PATCH", &apply_url, "application/apply-patch+yaml", cfg_body.as_bytes());
    let first = apply().await;
    assert_eq!(first.code, 200, "{}", first.body);
    let rv1 = rv(&first.json()).to_string();
    assert_ne!(rv1, rv0, "the first apply changes labels");
    tokio::time::sleep(Duration::from_millis(1100)).await; // a new managedFields timestamp
    let again = apply().await;
    assert_eq!(again.code, 200, "{}", again.body);
    assert_eq!(rv(&again.json()), rv1, "re-applying the same configuration wrote");
    // A real change still writes and bumps generation.
    let r = http(base, "PATCH", &url, "application/merge-patch+json", br#"{"spec": {"replicas": 3}}"#).await;
    let o = r.json();
    assert_ne!(rv(&o), rv1);
    assert_eq!(o["metadata"]["generation"], gen0.as_i64().unwrap() + 1);
}

/// E: a body may repeat the object's identity, never change it.
#[tokio::test(flavor = "multi_thread")]
async fn bodies_cannot_change_an_objects_identity() {
    let cluster = Cluster::start(1).await;
    let base = &cluster.servers[0].api_url;
    let created = http(base, "POST", DEPLOYS, "application/json", deployment("web").to_string().as_bytes()).await;
    let d = created.json();
    let url = format!("{DEPLOYS}/web");
    let r = http(base, "PATCH", &url, "application/merge-patch+json", br#"{"metadata": {"name": "other"}}"#).await;
    assert_eq!(r.code, 400, "{}", r.body);
    assert_eq!(r.json()["message"], "the name of the object (other) does not match the name on the URL (web)");
    let r = http(base, "PATCH", &url, "application/merge-patch+json", br#"{"metadata": {"namespace": "kube-system"}}"#)
        .await;
    assert_eq!(r.code, 400, "{}", r.body);
    let r = http(base, "PATCH", &url, "application/merge-patch+json", br#"{"metadata": {"uid": "not-the-uid"}}"#).await;
    assert_eq!(r.code, 422, "{}", r.body);
    let msg = r.json()["message"].as_str().unwrap().to_string();
    assert!(msg.contains(r#"metadata.uid: Invalid value: "not-the-uid": field is immutable"#), "{msg}");
    let apply = |body: Value| {
        let base = base.clone();
        let url = url.clone();
        async move {
            http(
                &base,
                "PATCH",
                &format!("{url}?fieldManager=m"),
                "application/apply-patch+yaml",
                body.to_string().as_bytes(),
            )
            .await
        }
    };
    let r = apply(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "other"}})).await;
    assert_eq!(r.code, 400, "{}", r.body);
    // A stale resourceVersion in an applied configuration is a conflict.
    http(base, "PATCH", &url, "application/merge-patch+json", br#"{"spec": {"replicas": 2}}"#).await;
    let stale = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "resourceVersion": rv(&d), "labels": {"a": "b"}}});
    let r = apply(stale).await;
    assert_eq!(r.code, 409, "{}", r.body);
    assert_eq!(r.json()["reason"], "Conflict");
    let now = get(base, &url).await.json();
    assert!(now["metadata"]["labels"].get("a").is_none(), "the stale apply was not applied");
    assert_eq!(now["metadata"]["uid"], d["metadata"]["uid"]);
}

/// F: the small ways bad input was accepted, each answered as kube-apiserver does.
#[tokio::test(flavor = "multi_thread")]
async fn small_input_errors_match_kube_apiserver() {
    let cluster = Cluster::start(1).await;
    let base = &cluster.servers[0].api_url;
    assert_eq!(http(base, "POST", CMS, "application/json", br#"{"metadata": {"name": "cm"}}"#).await.code, 201);

    // Bodies up to 3 MiB are read; over it, a JSON Status.
    let r = http(base, "POST", CMS, "application/json", &vec![b' '; 3 * 1024 * 1024 + 1]).await;
    assert_eq!(r.code, 413);
    assert_eq!(r.json()["kind"], "Status");
    assert_eq!(r.json()["code"], 413);
    let r = http(base, "POST", CMS, "application/json", &vec![b' '; 2500 * 1024]).await;
    assert_eq!(r.code, 400, "read, then found empty: {}", r.body);

    // Unknown subresources, and status of a resource without one: 404.
    for path in [format!("{CMS}/cm/status"), format!("{CMS}/cm/bogus"), "/api/v1/namespaces/default/bogus".into()] {
        let r = get(base, &path).await;
        assert_eq!(r.code, 404, "{path}: {}", r.body);
        assert_eq!(r.json()["message"], "the server could not find the requested resource", "{path}");
    }
    let r =
        http(base, "PUT", &format!("{CMS}/cm/status"), "application/json", br#"{"metadata": {"name": "cm"}}"#).await;
    assert_eq!(r.code, 404);

    // resourceVersion must be an unsigned integer.
    for q in ["-5", "abc"] {
        for path in [format!("{CMS}/cm?resourceVersion={q}"), format!("{CMS}?resourceVersion={q}")] {
            let r = get(base, &path).await;
            assert_eq!(r.code, 400, "{path}: {}", r.body);
            assert!(r.json()["message"].as_str().unwrap().contains("invalid resource version"), "{}", r.body);
        }
    }

    // A kind that is not a string.
    let r = http(base, "POST", CMS, "application/json", br#"{"kind": 5, "metadata": {"name": "k"}}"#).await;
    assert_eq!(r.code, 400, "{}", r.body);

    // Selectors kube-apiserver refuses.
    let r = get(base, &format!("{CMS}?labelSelector={}%3Dx", "a".repeat(70))).await;
    assert_eq!(r.code, 400, "{}", r.body);
    assert!(r.json()["message"].as_str().unwrap().contains("name part must be no more than 63 characters"));
    let r = get(base, &format!("{CMS}?fieldSelector=metadata.name%3D%3Da%3D%3Db")).await;
    assert_eq!(r.code, 400, "{}", r.body);
    assert!(r.json()["message"].as_str().unwrap().contains("unescaped character in value"), "{}", r.body);

    // Repeated keys: an error with Strict, a warning with Warn (the default).
    let dup = br#"{"metadata": {"name": "dup", "name": "dup"}, "data": {"a": "1"}}"#;
    let r = http(base, "POST", &format!("{CMS}?fieldValidation=Strict"), "application/json", dup).await;
    assert_eq!(r.code, 400, "{}", r.body);
    assert_eq!(r.json()["message"], r#"strict decoding error: duplicate field "metadata.name""#);
    let r = http(base, "POST", CMS, "application/json", dup).await;
    assert_eq!(r.code, 201, "{}", r.body);
    assert!(r.header("warning").iter().any(|w| w.contains(r#"duplicate field \"metadata.name\""#)), "{:?}", r.headers);
    let r = http(
        base,
        "POST",
        &format!("{CMS}?fieldValidation=Strict"),
        "application/yaml",
        b"metadata:\n  name: y\n  name: y\n",
    )
    .await;
    assert_eq!(r.code, 400, "{}", r.body);

    // YAML infinities are not numbers (they used to become null, then a default).
    let r = http(
        base,
        "POST",
        DEPLOYS,
        "application/yaml",
        serde_yaml::to_string(&deployment("inf")).unwrap().replace("replicas: 1", "replicas: .inf").as_bytes(),
    )
    .await;
    assert_eq!(r.code, 400, "{}", r.body);
    assert!(r.json()["message"].as_str().unwrap().contains("unsupported value: +Inf"), "{}", r.body);
}

/// System namespaces deleted out from under the server (straight from the store) come back,
/// as kube-apiserver's system namespaces controller restores them.
#[tokio::test(flavor = "multi_thread")]
async fn deleted_system_namespaces_are_restored() {
    let settings =
        berth_control::tasks::Settings { system_namespaces_every: Duration::from_secs(1), ..Default::default() };
    let cluster = Cluster::start_with(1, settings).await;
    let base = &cluster.servers[0].api_url;
    let info = berth_control::resource::find("", "v1", "namespaces").unwrap();
    let key = berth_control::registry::storage::object_key(info, None, "kube-public");
    assert_eq!(get(base, "/api/v1/namespaces/kube-public").await.code, 200);
    let deleted = cluster.servers[0]
        .store
        .delete_range(berth_proto::etcdserverpb::DeleteRangeRequest { key: key.into_bytes(), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(deleted.deleted, 1);
    assert_eq!(get(base, "/api/v1/namespaces/kube-public").await.code, 404);
    let started = Instant::now();
    while get(base, "/api/v1/namespaces/kube-public").await.code != 200 {
        assert!(started.elapsed() < Duration::from_secs(10), "kube-public was not restored");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_store_member_fails_readiness_and_liveness() {
    let cluster = Cluster::start(1).await;
    let base = cluster.servers[0].api_url.clone();
    for path in ["/readyz", "/livez", "/healthz"] {
        assert_eq!(get(&base, path).await.code, 200, "{path} before");
    }
    // The store's Raft core stops (as it does on local corruption): kube-apiserver's
    // probes must say so, not keep answering "ok" while every request gets 503.
    cluster.servers[0].store.raft().shutdown().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let ready = loop {
        let ready = get(&base, "/readyz").await;
        if ready.code != 200 || Instant::now() > deadline {
            break ready;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(ready.code, 500, "{}", ready.body);
    assert!(ready.body.contains("RAFT STOPPED"), "{}", ready.body);
    let live = get(&base, "/livez").await;
    assert_eq!(live.code, 500, "{}", live.body);
    assert!(live.body.contains("raft stopped") && live.body.contains("livez check failed"), "{}", live.body);
}
