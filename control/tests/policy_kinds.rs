//! The policy kinds users' manifests carry (issue 21), with the real kubectl: manifests
//! from the Kubernetes docs apply unchanged and print kube-apiserver's columns; the system
//! PriorityClasses exist and a pod takes its class's priority; LimitRange defaults and
//! bounds a namespace's containers; a PodDisruptionBudget's status is computed and an
//! eviction that would break it is refused with 429.

use std::time::Duration;

use berth_control::testing::{self, Server};
use berth_testkit::eventually;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, EvictParams, Patch, PatchParams, PostParams};

async fn kubectl(server: &Server, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    testing::kubectl(&server.kubeconfig_yaml(), args, stdin).await
}

async fn ok(server: &Server, args: &[&str], stdin: Option<&str>) -> String {
    let (ok, out, err) = kubectl(server, args, stdin).await;
    assert!(ok, "kubectl {args:?}: {err}");
    assert!(!err.to_lowercase().contains("warning"), "kubectl {args:?} warned: {err}");
    out
}

/// From the Kubernetes docs (Pod Priority and Preemption, Limit Ranges, Network Policies,
/// Specifying a Disruption Budget), unchanged apart from names.
const MANIFESTS: &str = r#"
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata:
  name: high-priority
value: 1000000
globalDefault: false
description: "This priority class should be used for XYZ service pods only."
---
apiVersion: v1
kind: LimitRange
metadata:
  name: cpu-resource-constraint
  namespace: default
spec:
  limits:
  - default:
      cpu: 500m
    defaultRequest:
      cpu: 500m
    max:
      cpu: "1"
    min:
      cpu: 100m
    type: Container
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: test-network-policy
  namespace: default
spec:
  podSelector:
    matchLabels:
      role: db
  policyTypes:
  - Ingress
  - Egress
  ingress:
  - from:
    - ipBlock:
        cidr: 172.17.0.0/16
        except:
        - 172.17.1.0/24
    - namespaceSelector:
        matchLabels:
          project: myproject
    - podSelector:
        matchLabels:
          role: frontend
    ports:
    - protocol: TCP
      port: 6379
  egress:
  - to:
    - ipBlock:
        cidr: 10.0.0.0/24
    ports:
    - protocol: TCP
      port: 5978
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: zk-pdb
  namespace: default
spec:
  minAvailable: 2
  selector:
    matchLabels:
      app: zookeeper
"#;

fn table_row<'a>(table: &'a str, name: &str) -> Vec<&'a str> {
    table.lines().find(|l| l.starts_with(name)).map(|l| l.split_whitespace().collect()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn policy_kinds_apply_print_and_take_effect() {
    let server = Server::start().await;
    let out = ok(&server, &["apply", "-f", "-"], Some(MANIFESTS)).await;
    for line in [
        "priorityclass.scheduling.k8s.io/high-priority created",
        "limitrange/cpu-resource-constraint created",
        "networkpolicy.networking.k8s.io/test-network-policy created",
        "poddisruptionbudget.policy/zk-pdb created",
    ] {
        assert!(out.contains(line), "{out}");
    }
    let netpol = ok(&server, &["get", "netpol"], None).await;
    assert_eq!(table_row(&netpol, "test-network-policy")[..2], ["test-network-policy", "role=db"], "{netpol}");
    let limits = ok(&server, &["get", "limits"], None).await;
    assert!(limits.starts_with("NAME"), "{limits}");

    // The system classes are the leader's to create; user classes print their value.
    let classes = eventually(Duration::from_secs(20), "the system PriorityClasses", async || {
        let out = ok(&server, &["get", "priorityclasses"], None).await;
        out.contains("system-node-critical").then_some(out)
    })
    .await;
    assert_eq!(table_row(&classes, "system-node-critical")[..3], ["system-node-critical", "2000001000", "false"]);
    assert_eq!(table_row(&classes, "high-priority")[..3], ["high-priority", "1000000", "false"]);
    let (ok_, _, err) = kubectl(
        &server,
        &["apply", "-f", "-"],
        Some("apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {name: system-mine}\nvalue: 10\n"),
    )
    .await;
    assert!(
        !ok_ && err.contains("priority class names with 'system-' prefix are reserved for system use only"),
        "{err}"
    );

    // Priority and LimitRanger admission of new pods.
    let pods = Api::<Pod>::namespaced(server.client(), "default");
    let pod = |name: &str, extra: serde_json::Value| -> Pod {
        let mut p = serde_json::json!({"metadata": {"name": name, "labels": {"app": "zookeeper"}},
            "spec": {"containers": [{"name": "c", "image": "registry.local/zk:1"}]}});
        json_merge(&mut p, extra);
        serde_json::from_value(p).unwrap()
    };
    let created = pods
        .create(
            &PostParams::default(),
            &pod("zk-0", serde_json::json!({"spec": {"priorityClassName": "high-priority"}})),
        )
        .await
        .unwrap();
    let spec = created.spec.unwrap();
    assert_eq!(spec.priority, Some(1_000_000));
    let resources = spec.containers[0].resources.clone().unwrap();
    assert_eq!(resources.limits.unwrap()["cpu"].0, "500m", "the LimitRange's default limit");
    assert_eq!(resources.requests.unwrap()["cpu"].0, "500m", "the LimitRange's default request");
    let err = pods
        .create(
            &PostParams::default(),
            &pod(
                "greedy",
                serde_json::json!({"spec": {"containers": [{"name": "c",
            "image": "registry.local/zk:1", "resources": {"limits": {"cpu": "2"}}}]}}),
            ),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains(r#"pods "greedy" is forbidden: maximum cpu usage per Container is 1, but limit is 2"#),
        "{err}"
    );
    let err = pods
        .create(&PostParams::default(), &pod("lost", serde_json::json!({"spec": {"priorityClassName": "gold"}})))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no PriorityClass with name gold was found"), "{err}");

    // Three ready zookeeper pods under minAvailable 2: one may go, the next is refused.
    for name in ["zk-1", "zk-2"] {
        pods.create(&PostParams::default(), &pod(name, serde_json::json!({}))).await.unwrap();
    }
    for name in ["zk-0", "zk-1", "zk-2"] {
        let ready = serde_json::json!({"status": {"phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"}]}});
        pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&ready)).await.unwrap();
    }
    let budgets = Api::<PodDisruptionBudget>::namespaced(server.client(), "default");
    eventually(Duration::from_secs(20), "the budget's status", async || {
        let status = budgets.get("zk-pdb").await.ok()?.status?;
        (status.current_healthy == 3 && status.disruptions_allowed == 1).then_some(())
    })
    .await;
    let table = ok(&server, &["get", "pdb"], None).await;
    assert_eq!(table_row(&table, "zk-pdb")[..4], ["zk-pdb", "2", "N/A", "1"], "{table}");
    pods.evict("zk-0", &EvictParams::default()).await.expect("the first eviction fits the budget");
    // kubectl (client-go) does not retry a 429 without Retry-After, as kube-apiserver sends
    // it here; kube-rs would back off for minutes.
    let eviction =
        r#"{"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "zk-1", "namespace": "default"}}"#;
    let (evicted, _, err) = kubectl(
        &server,
        &["create", "--raw", "/api/v1/namespaces/default/pods/zk-1/eviction", "-f", "-"],
        Some(eviction),
    )
    .await;
    assert!(!evicted, "the second eviction breaks the budget");
    assert_eq!(
        err.trim(),
        "Error from server (TooManyRequests): Cannot evict pod as it would violate the pod's disruption budget."
    );
    assert!(pods.get_opt("zk-1").await.unwrap().is_some(), "the refused pod stays");
}

fn json_merge(target: &mut serde_json::Value, patch: serde_json::Value) {
    match (target, patch) {
        (serde_json::Value::Object(t), serde_json::Value::Object(p)) => {
            for (k, v) in p {
                json_merge(t.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (t, p) => *t = p,
    }
}
