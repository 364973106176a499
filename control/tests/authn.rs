//! Authentication on a real TLS API port (issue 20): client certificates name the user,
//! anonymous callers reach only the health and version endpoints, and certificates the
//! cluster CA did not issue are refused with kube-apiserver's 401 — over real TLS
//! connections, raw HTTP and kube-rs alike.

use berth_control::testing::{self, Server};
use berth_proto::kubeconfig::Credentials;
use berth_proto::pki::Ca;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `GET path` over a fresh TLS connection presenting `credentials`: (status, body).
async fn get(url: &str, path: &str, credentials: Option<&Credentials>) -> (u16, String) {
    let mut s = testing::connect_as(url, credentials).await;
    let head = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    // The server may close without a TLS close_notify: the answer is complete anyway.
    let _ = s.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread")]
async fn certificates_name_the_caller_and_anonymous_callers_reach_only_public_paths() {
    let server = Server::start().await;
    let url = &server.api_url;

    // Anonymous: health and version only, as system:public-info-viewer allows.
    for path in ["/healthz", "/livez", "/readyz", "/version"] {
        assert_eq!(get(url, path, None).await.0, 200, "{path}");
    }
    // The official Python client's `VersionApi().get_code()` asks for `/version/`.
    let (status, body) = get(url, "/version/", None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("gitVersion"), "{body}");
    for path in ["/api", "/api/v1/namespaces/default/secrets", "/apis", "/metrics"] {
        let (status, body) = get(url, path, None).await;
        assert_eq!(status, 401, "{path}: {body}");
        let status: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            (status["reason"].as_str(), status["message"].as_str()),
            (Some("Unauthorized"), Some("Unauthorized"))
        );
    }

    // A certificate from another CA: 401 on every path (kube-apiserver's x509 verdict).
    let stranger_ca = Ca::generate("stranger").unwrap();
    let forged = Credentials {
        ca_pem: testing::admin().ca_pem.clone(),
        client: stranger_ca.issue_client("kubernetes-admin", &["system:masters"]).unwrap(),
    };
    assert_eq!(get(url, "/api", Some(&forged)).await.0, 401);
    assert_eq!(get(url, "/healthz", Some(&forged)).await.0, 401, "wrong credentials are refused even there");

    // The cluster CA's certificates: the user and groups they name (SelfSubjectReview).
    assert_eq!(get(url, "/api", Some(testing::admin())).await.0, 200);
    for (creds, user, group) in [
        (testing::admin().clone(), "kubernetes-admin", "system:masters"),
        (testing::node_credentials("node-1"), "system:node:node-1", "system:nodes"),
    ] {
        let client = server.client_as(&creds);
        let req = http::Request::post("/apis/authentication.k8s.io/v1/selfsubjectreviews")
            .header("content-type", "application/json")
            .body(br#"{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}"#.to_vec())
            .unwrap();
        let review: serde_json::Value = client.request(req).await.unwrap();
        let info = &review["status"]["userInfo"];
        assert_eq!(info["username"], user);
        let groups: Vec<&str> = info["groups"].as_array().unwrap().iter().filter_map(|g| g.as_str()).collect();
        assert_eq!(groups, [group, "system:authenticated"]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_auth_whoami_names_the_admin() {
    let server = Server::start().await;
    let kubeconfig = testing::kubeconfig_file(&server.api_url);
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("kubectl")
            .args(["auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"])
            .env("KUBECONFIG", kubeconfig.path())
            .output()
            .expect("kubectl on PATH")
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "kubernetes-admin");
}
