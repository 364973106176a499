//! Audit logging on a real server process (issue 20): with kube-apiserver's
//! `--audit-policy-file` and `--audit-log-path`, requests are recorded as `audit.k8s.io/v1`
//! Event lines at the level the first matching rule gives — the object of a ConfigMap write
//! included at `Request`, metadata only elsewhere, nothing for what the policy says `None`.

use std::time::Duration;

use berth_testkit::blocking::eventually;
use berth_tests::berthctl::{Agent, CtlCluster};
use serde_json::Value;

const POLICY: &str = r#"apiVersion: audit.k8s.io/v1
kind: Policy
rules:
- level: None
  nonResourceURLs: ["/api*", "/version", "/healthz", "/readyz", "/livez", "/openapi*"]
- level: Request
  resources:
  - group: ""
    resources: ["configmaps"]
- level: Metadata
  users: ["kubernetes-admin"]
"#;

#[tokio::test(flavor = "multi_thread")]
async fn requests_are_recorded_as_the_policy_says() {
    let dir = tempfile::tempdir().unwrap();
    let (policy, log) = (dir.path().join("policy.yaml"), dir.path().join("audit.log"));
    std::fs::write(&policy, POLICY).unwrap();
    let args = ["--audit-policy-file", policy.to_str().unwrap(), "--audit-log-path", log.to_str().unwrap()];
    let c = CtlCluster::start_with_server_args(1, Agent::None, &args).await;
    let manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: audited, namespace: default}\ndata: {k: v}\n";
    c.ok_stdin(&["apply", "-f", "-"], manifest);
    c.ok(&["get", "namespaces"]);
    let events = || -> Vec<Value> {
        std::fs::read_to_string(&log).unwrap_or_default().lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    };
    let written = eventually(Duration::from_secs(10), "the ConfigMap's write audited", || {
        events().into_iter().find(|e| {
            e["objectRef"]["name"] == "audited" && e["objectRef"]["resource"] == "configmaps" && e["verb"] != "get"
        })
    });
    assert_eq!((written["kind"].as_str(), written["apiVersion"].as_str()), (Some("Event"), Some("audit.k8s.io/v1")));
    assert_eq!(written["level"], "Request");
    assert_eq!(written["stage"], "ResponseComplete");
    assert_eq!(written["user"]["username"], "kubernetes-admin");
    assert_eq!(written["requestObject"]["data"]["k"], "v", "{written}");
    assert!(written["responseStatus"]["code"].as_u64().is_some_and(|c| (200..300).contains(&c)), "{written}");
    let listed = eventually(Duration::from_secs(10), "the namespace list audited", || {
        events().into_iter().find(|e| e["objectRef"]["resource"] == "namespaces" && e["verb"] == "list")
    });
    assert_eq!(listed["level"], "Metadata");
    assert!(listed.get("requestObject").is_none() && listed.get("responseObject").is_none());
    // Discovery (`/api*`) is `None`: never recorded.
    assert!(events()
        .iter()
        .all(|e| e["objectRef"].is_object() || !e["requestURI"].as_str().unwrap_or("").starts_with("/api")));
}
