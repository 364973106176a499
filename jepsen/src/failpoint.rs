//! The store's failpoints (`berth_store::failpoints`) as a nemesis: which point and which
//! action to enable (pure, seeded), and the `/debug/failpoints` calls that enable, remove
//! and probe them on a server's Kubernetes API port (only a server built with
//! `--features berth-store/failpoints` has that route; others answer 404).
//!
//! Actions are the `fail` crate's: `return` and `N%return` crash the server at that point
//! (it aborts, nothing flushed — a power cut at that instruction); `sleep(ms)` stalls it
//! there (`raft-log-before-fsync` with a sleep is a slow fsync).

use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::Rng;

use crate::HarnessError;

/// Every failpoint the store has (mirrors `berth_store::failpoints::ALL`; the probe at run
/// start checks the server lists them all, so a rename fails loudly, not silently).
pub const POINTS: &[&str] = &[
    "raft-log-before-fsync",
    "raft-log-after-fsync",
    "apply-before-watch-notify",
    "snapshot-install",
    "log-purge",
    "lease-expiry",
];

/// What to tell a user whose server lacks failpoints.
pub const BUILD_HINT: &str = "cargo build -p berth-control --features berth-store/failpoints";

/// One failpoint setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub point: &'static str,
    /// The `fail` crate's action string.
    pub action: String,
}

impl Setting {
    /// Whether the action may crash the server (heal must then restart it).
    pub fn crashes(&self) -> bool {
        self.action.ends_with("return")
    }
}

/// A random point and action: half crashes (`return`, or `N%return` so the server gets
/// a few more hits in before it dies), half stalls of 100 ms to 2 s.
pub fn plan(rng: &mut StdRng) -> Setting {
    let point = *POINTS.choose(rng).unwrap_or(&POINTS[0]);
    let action = if rng.random_bool(0.5) {
        match *[0u32, 10, 30, 50].choose(rng).unwrap_or(&0) {
            0 => "return".to_string(),
            p => format!("{p}%return"),
        }
    } else {
        format!("sleep({})", rng.random_range(1..=20) * 100)
    };
    Setting { point, action }
}

/// Parses `GET /debug/failpoints` (`name=actions` per line) into names.
pub fn listed(text: &str) -> Vec<String> {
    text.lines().filter_map(|l| l.split_once('=').map(|(n, _)| n.trim().to_string())).collect()
}

/// A failed call: the HTTP status when the server answered, and what happened.
struct CallFailure {
    status: Option<u16>,
    message: String,
}

/// One request to the server at `api_url`, with a short deadline: the nemesis must not
/// hang on a server it just stalled.
async fn call(api_url: &str, method: &str, path: &str, body: &str) -> Result<String, CallFailure> {
    let failure = |message: String| CallFailure { status: None, message };
    let client = crate::kube_api::client(api_url, Duration::from_secs(2)).map_err(|e| failure(e.to_string()))?;
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .body(body.as_bytes().to_vec())
        .map_err(|e| failure(e.to_string()))?;
    match tokio::time::timeout(Duration::from_secs(3), client.request_text(request)).await {
        Ok(Ok(text)) => Ok(text),
        Ok(Err(kube::Error::Api(s))) => Err(CallFailure { status: Some(s.code), message: s.message }),
        Ok(Err(e)) => Err(failure(e.to_string())),
        Err(_) => Err(failure("no answer within 3 s".into())),
    }
}

/// Checks at run start that the server at `api_url` has every failpoint; a 404 means a
/// build without them, and the error says how to build one.
pub async fn probe(api_url: &str) -> Result<(), HarnessError> {
    match call(api_url, "GET", "/debug/failpoints", "").await {
        Ok(text) => {
            let names = listed(&text);
            match POINTS.iter().find(|p| !names.iter().any(|n| n == *p)) {
                Some(missing) => Err(HarnessError::Config(format!(
                    "the server at {api_url} has no failpoint {missing:?} (it lists {}); rebuild it: {BUILD_HINT}",
                    names.join(", ")
                ))),
                None => Ok(()),
            }
        }
        Err(CallFailure { status: Some(404), .. }) => Err(HarnessError::Config(format!(
            "--nemesis failpoint: berth-server has no /debug/failpoints (404): it was built without failpoints; \
             build it with `{BUILD_HINT}`"
        ))),
        Err(e) => Err(HarnessError::Rpc(format!("GET {api_url}/debug/failpoints: {}", e.message))),
    }
}

/// Enables `setting` on the server at `api_url`.
pub async fn enable(api_url: &str, setting: &Setting) -> Result<(), HarnessError> {
    let path = format!("/debug/failpoints/{}", setting.point);
    call(api_url, "PUT", &path, &setting.action)
        .await
        .map(|_| ())
        .map_err(|e| HarnessError::Rpc(format!("PUT {api_url}{path} {}: {}", setting.action, e.message)))
}

/// Removes `point` on the server at `api_url`.
pub async fn remove(api_url: &str, point: &str) -> Result<(), HarnessError> {
    let path = format!("/debug/failpoints/{point}");
    call(api_url, "DELETE", &path, "")
        .await
        .map(|_| ())
        .map_err(|e| HarnessError::Rpc(format!("DELETE {api_url}{path}: {}", e.message)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn plans_cover_every_point_and_both_kinds_of_action() {
        let mut rng = StdRng::seed_from_u64(3);
        let plans: Vec<Setting> = (0..200).map(|_| plan(&mut rng)).collect();
        for p in POINTS {
            assert!(plans.iter().any(|s| s.point == *p), "{p} never chosen");
        }
        assert!(plans.iter().any(|s| s.action == "return"));
        assert!(plans.iter().any(|s| s.action.ends_with("%return") && s.crashes()));
        let stalls: Vec<&Setting> = plans.iter().filter(|s| !s.crashes()).collect();
        assert!(!stalls.is_empty());
        for s in stalls {
            let ms: u64 = s.action.trim_start_matches("sleep(").trim_end_matches(')').parse().unwrap();
            assert!((100..=2000).contains(&ms), "{}", s.action);
        }
    }

    /// A one-shot HTTP server answering every request with `status` and `body`.
    async fn answering(status: &'static str, body: String) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf).await;
                let reply = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(reply.as_bytes()).await;
            }
        });
        url
    }

    #[tokio::test]
    async fn a_server_without_failpoints_is_refused_with_the_build_command() {
        let url = answering("404 Not Found", String::new()).await;
        let err = probe(&url).await.unwrap_err().to_string();
        assert!(err.contains("--features berth-store/failpoints"), "{err}");
        let all: String = POINTS.iter().map(|p| format!("{p}=off\n")).collect();
        let url = answering("200 OK", all).await;
        probe(&url).await.unwrap();
        let url = answering("200 OK", "raft-log-before-fsync=off\n".into()).await;
        let err = probe(&url).await.unwrap_err().to_string();
        assert!(err.contains("raft-log-after-fsync"), "{err}");
    }

    #[test]
    fn the_listing_parses() {
        let text = "raft-log-before-fsync=off\nlease-expiry=sleep(5)\n";
        assert_eq!(listed(text), vec!["raft-log-before-fsync", "lease-expiry"]);
        assert!(listed("").is_empty());
    }
}
