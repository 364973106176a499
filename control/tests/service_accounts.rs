//! Service accounts on a real server with real kubectl (issue 20): every namespace gets a
//! `default` ServiceAccount and the `kube-root-ca.crt` ConfigMap; `kubectl create token`
//! issues a JWT that authenticates as the account (`kubectl auth whoami`) and is authorized
//! by RBAC like any user; a token bound to a pod dies with the pod, a token of a deleted
//! account dies with the account; forged and short-lived requests are refused; the issuer
//! publishes OIDC discovery and JWKS; new pods get the token volume.

use std::time::Duration;

use berth_control::testing::{self, Server};
use berth_testkit::eventually;
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, ServiceAccount};
use kube::api::{Api, DeleteParams, PostParams};

/// kubectl with `kubeconfig` (a file's text): (success, stdout, stderr).
async fn kubectl(kubeconfig: &str, args: &[&str]) -> (bool, String, String) {
    testing::kubectl(kubeconfig, args, None).await
}

/// A kubeconfig for `url` that trusts the test CA and presents bearer `token`.
fn token_kubeconfig(url: &str, token: &str) -> String {
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(&testing::admin().ca_pem);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {{server: \"{url}\", certificate-authority-data: {ca}}}\n\
         users:\n- name: u\n  user: {{token: \"{token}\"}}\ncontexts:\n- name: x\n  context: {{cluster: c, user: u}}\ncurrent-context: x\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_authenticate_their_account_while_it_and_their_pod_live() {
    let server = Server::start().await;
    let admin = server.kubeconfig_yaml();
    let client = server.client();
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": "shop"}})).unwrap(),
        )
        .await
        .unwrap();

    // The controller gives the namespace its account and the CA.
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "shop");
    let first = eventually(Duration::from_secs(10), "the default ServiceAccount", async || {
        accounts.get_opt("default").await.unwrap()
    })
    .await;
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "shop");
    let root_ca = eventually(Duration::from_secs(10), "kube-root-ca.crt", async || {
        config_maps.get_opt("kube-root-ca.crt").await.unwrap()
    })
    .await;
    assert_eq!(root_ca.data.unwrap()["ca.crt"], testing::admin().ca_pem);

    // kubectl create token; the token is the account's.
    let (ok, token, err) = kubectl(&admin, &["create", "token", "default", "-n", "shop"]).await;
    assert!(ok, "{err}");
    let token = token.trim().to_string();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    let as_account = token_kubeconfig(&server.api_url, &token);
    let (ok, out, err) = kubectl(&as_account, &["auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"]).await;
    assert!(ok, "{err}");
    assert_eq!(out, "system:serviceaccount:shop:default");
    // RBAC applies: nothing is granted yet, then a RoleBinding grants reading pods.
    let (ok, _, err) = kubectl(&as_account, &["get", "pods", "-n", "shop"]).await;
    assert!(!ok);
    assert!(
        err.contains(r#"User "system:serviceaccount:shop:default" cannot list resource "pods" in API group "" in the namespace "shop""#),
        "{err}"
    );
    let bind = ["create", "rolebinding", "read", "--clusterrole=view", "--serviceaccount=shop:default", "-n", "shop"];
    let (ok, _, err) = testing::kubectl(&admin, &bind, None).await;
    assert!(ok, "{err}");
    eventually(Duration::from_secs(10), "the binding takes effect", async || {
        kubectl(&as_account, &["get", "pods", "-n", "shop"]).await.0.then_some(())
    })
    .await;
    // Service accounts may read the issuer's discovery documents; anonymous callers may not.
    let (ok, out, err) = kubectl(&as_account, &["get", "--raw", "/.well-known/openid-configuration"]).await;
    assert!(ok, "{err}");
    let discovery: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(discovery["issuer"], "https://kubernetes.default.svc.cluster.local");
    let (ok, out, err) = kubectl(&as_account, &["get", "--raw", "/openid/v1/jwks"]).await;
    assert!(ok, "{err}");
    let jwks: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(jwks["keys"][0]["alg"], "ES256");

    // Too short a lifetime: kube-apiserver's 422.
    let (ok, _, err) = kubectl(&admin, &["create", "token", "default", "-n", "shop", "--duration=5m"]).await;
    assert!(!ok && err.contains("may not specify a duration less than 10 minutes"), "{err}");
    // A forged token (signed by another key) and garbage: 401.
    let (ok, _, err) = kubectl(&token_kubeconfig(&server.api_url, "not.a.jwt"), &["get", "pods", "-n", "shop"]).await;
    assert!(!ok && err.contains("the server has asked for the client to provide credentials"), "{err}");

    // A new pod runs as `default` with the token volume mounted.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "shop");
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web"},
        "spec": {"containers": [{"name": "app", "image": "busybox"}]},
    }))
    .unwrap();
    let pod = pods.create(&PostParams::default(), &pod).await.unwrap();
    let spec = pod.spec.clone().unwrap();
    assert_eq!(spec.service_account_name.as_deref(), Some("default"));
    let volume =
        spec.volumes.unwrap().into_iter().find(|v| v.name.starts_with("kube-api-access-")).expect("the volume");
    let mounts = spec.containers[0].volume_mounts.clone().unwrap();
    assert!(mounts
        .iter()
        .any(|m| m.name == volume.name && m.mount_path == "/var/run/secrets/kubernetes.io/serviceaccount"));

    // A token bound to the pod works while the pod lives.
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![],
            expiration_seconds: Some(3600),
            bound_object_ref: Some(BoundObjectReference {
                kind: Some("Pod".into()),
                api_version: Some("v1".into()),
                name: Some("web".into()),
                uid: pod.metadata.uid.clone(),
            }),
        },
        ..Default::default()
    };
    let bound = accounts.create_token_request("default", &PostParams::default(), &request).await.unwrap();
    let bound = token_kubeconfig(&server.api_url, &bound.status.unwrap().token);
    assert!(kubectl(&bound, &["auth", "whoami"]).await.0);
    pods.delete("web", &DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await.unwrap();
    eventually(Duration::from_secs(10), "the pod's token dies with it", async || {
        let (ok, _, err) = kubectl(&bound, &["auth", "whoami"]).await;
        (!ok && err.contains("Unauthorized")).then_some(())
    })
    .await;

    // Deleting the account kills its tokens, also once the controller has made a new one.
    accounts.delete("default", &DeleteParams::default()).await.unwrap();
    let second = eventually(Duration::from_secs(10), "a new default ServiceAccount", async || {
        accounts.get_opt("default").await.unwrap().filter(|sa| sa.metadata.uid != first.metadata.uid)
    })
    .await;
    assert_ne!(second.metadata.uid, first.metadata.uid);
    let (ok, _, err) = kubectl(&as_account, &["auth", "whoami"]).await;
    assert!(!ok && err.contains("Unauthorized"), "{err}");
}
