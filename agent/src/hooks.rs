//! Container lifecycle hooks — `postStart` and `preStop` — as the kubelet runs them: an
//! `exec` command in the container, an `httpGet` against the pod (its IP unless `host` is
//! given; named ports resolve against the container's ports), or a `sleep`.
//!
//! [`Hook::of`] decides which handler a hook is and where it goes (pure); [`run`]
//! performs it, bounded by a timeout; [`failure_message`] words a failure as the kubelet's
//! `FailedPostStartHook`/`FailedPreStopHook` events do.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, LifecycleHandler};

use crate::prober::{self, ExecTarget};

/// How long a `postStart` hook may run. The kubelet waits without a bound; here every
/// wait has one, and a hook still running after this counts as failed.
pub const POST_START_TIMEOUT: Duration = Duration::from_secs(120);

/// One hook handler, resolved for a container of a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hook {
    Exec(Vec<String>),
    HttpGet { host: String, port: u16, path: String, headers: Vec<(String, String)> },
    Sleep(Duration),
}

impl Hook {
    /// The hook `handler` of `container`, with `pod_ip` as the httpGet host default.
    pub fn of(handler: &LifecycleHandler, container: &Container, pod_ip: &str) -> Result<Hook, String> {
        if let Some(exec) = &handler.exec {
            let command = exec.command.clone().unwrap_or_default();
            if command.is_empty() {
                return Err("exec hook without a command".into());
            }
            Ok(Hook::Exec(command))
        } else if let Some(h) = &handler.http_get {
            if h.scheme.as_deref().is_some_and(|s| s.eq_ignore_ascii_case("HTTPS")) {
                return Err("HTTPS lifecycle hooks are not supported by this agent".into());
            }
            let host = h.host.clone().filter(|h| !h.is_empty()).unwrap_or_else(|| pod_ip.to_string());
            let port = prober::port_of(&h.port, container)?;
            let path = h.path.clone().filter(|p| !p.is_empty()).unwrap_or_else(|| "/".into());
            let path = if path.starts_with('/') { path } else { format!("/{path}") };
            let headers = h.http_headers.iter().flatten().map(|h| (h.name.clone(), h.value.clone())).collect();
            Ok(Hook::HttpGet { host, port, path, headers })
        } else if let Some(sleep) = &handler.sleep {
            u64::try_from(sleep.seconds)
                .map(|s| Hook::Sleep(Duration::from_secs(s)))
                .map_err(|_| format!("sleep hook: invalid seconds {}", sleep.seconds))
        } else if handler.tcp_socket.is_some() {
            Err("tcpSocket is not a valid lifecycle hook handler".into())
        } else {
            Err("the lifecycle hook has no handler".into())
        }
    }

    /// How the kubelet names the hook in its events: the command, or the path.
    fn describe(&self) -> String {
        match self {
            Hook::Exec(command) => format!("Exec lifecycle hook ({command:?})"),
            Hook::HttpGet { path, .. } => format!("HTTP lifecycle hook ({path})"),
            Hook::Sleep(d) => format!("Sleep lifecycle hook ({}s)", d.as_secs()),
        }
    }
}

/// The container's `postStart` handler, if it has one.
pub fn post_start(c: &Container) -> Option<&LifecycleHandler> {
    c.lifecycle.as_ref()?.post_start.as_ref()
}

/// The container's `preStop` handler, if it has one.
pub fn pre_stop(c: &Container) -> Option<&LifecycleHandler> {
    c.lifecycle.as_ref()?.pre_stop.as_ref()
}

/// Runs `hook` (exec through `exec`: in the container), bounded by `timeout`.
pub async fn run(hook: &Hook, exec: Option<&ExecTarget>, timeout: Duration) -> Result<(), String> {
    let attempt = async {
        match hook {
            Hook::Exec(command) => prober::run_hook(command, exec, timeout).await,
            Hook::HttpGet { host, port, path, headers } => prober::http_get(host, *port, path, headers).await,
            Hook::Sleep(d) => {
                tokio::time::sleep(*d).await;
                Ok(())
            }
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        // A sleep as long as the bound has done what it was asked.
        Err(_) if matches!(hook, Hook::Sleep(_)) => Ok(()),
        Err(_) => Err(format!("did not finish within {}s", timeout.as_secs())),
    }
}

/// The event message of a failed hook, in the kubelet's words.
pub fn failure_message(hook: Option<&Hook>, container: &str, pod: &str, error: &str) -> String {
    let what = hook.map_or_else(|| "Lifecycle hook".to_string(), Hook::describe);
    format!("{what} for Container \"{container}\" in Pod \"{pod}\" failed - error: {error}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ExecAction, HTTPGetAction, SleepAction, TCPSocketAction};
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    fn container() -> Container {
        serde_json::from_value(serde_json::json!({
            "name": "web", "ports": [{"name": "http", "containerPort": 8080}]
        }))
        .unwrap()
    }

    #[test]
    fn each_handler_resolves_against_the_container_and_the_pod() {
        let c = container();
        let exec = LifecycleHandler {
            exec: Some(ExecAction { command: Some(vec!["sh".into(), "-c".into(), "echo hi".into()]) }),
            ..Default::default()
        };
        assert_eq!(Hook::of(&exec, &c, "10.0.0.2"), Ok(Hook::Exec(vec!["sh".into(), "-c".into(), "echo hi".into()])));
        let http = LifecycleHandler {
            http_get: Some(HTTPGetAction {
                port: IntOrString::String("http".into()),
                path: Some("started".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            Hook::of(&http, &c, "10.0.0.2"),
            Ok(Hook::HttpGet { host: "10.0.0.2".into(), port: 8080, path: "/started".into(), headers: vec![] })
        );
        let sleep = LifecycleHandler { sleep: Some(SleepAction { seconds: 3 }), ..Default::default() };
        assert_eq!(Hook::of(&sleep, &c, "10.0.0.2"), Ok(Hook::Sleep(Duration::from_secs(3))));
    }

    #[test]
    fn bad_handlers_say_why() {
        let c = container();
        let https = LifecycleHandler {
            http_get: Some(HTTPGetAction {
                port: IntOrString::Int(443),
                scheme: Some("HTTPS".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(Hook::of(&https, &c, "10.0.0.2").unwrap_err().contains("HTTPS"));
        let unknown_port = LifecycleHandler {
            http_get: Some(HTTPGetAction { port: IntOrString::String("admin".into()), ..Default::default() }),
            ..Default::default()
        };
        assert!(Hook::of(&unknown_port, &c, "10.0.0.2").unwrap_err().contains("\"admin\""));
        let tcp = LifecycleHandler {
            tcp_socket: Some(TCPSocketAction { port: IntOrString::Int(1), ..Default::default() }),
            ..Default::default()
        };
        assert!(Hook::of(&tcp, &c, "10.0.0.2").unwrap_err().contains("tcpSocket"));
        assert!(Hook::of(&LifecycleHandler::default(), &c, "x").is_err());
        let negative = LifecycleHandler { sleep: Some(SleepAction { seconds: -1 }), ..Default::default() };
        assert!(Hook::of(&negative, &c, "x").is_err());
    }

    #[test]
    fn failures_are_worded_as_the_kubelet_words_them() {
        let hook = Hook::Exec(vec!["false".into()]);
        assert_eq!(
            failure_message(Some(&hook), "web", "shop/web-1", "exit code 1"),
            "Exec lifecycle hook ([\"false\"]) for Container \"web\" in Pod \"shop/web-1\" failed - error: exit code 1"
        );
    }

    #[tokio::test]
    async fn a_hook_that_does_not_finish_in_time_fails_and_a_sleep_succeeds() {
        let hang = Hook::HttpGet { host: "127.0.0.1".into(), port: 9, path: "/".into(), headers: vec![] };
        // Port 9 (discard) refuses at once on loopback: an error, not a hang.
        assert!(run(&hang, None, Duration::from_secs(2)).await.is_err());
        assert_eq!(run(&Hook::Sleep(Duration::from_millis(10)), None, Duration::from_secs(1)).await, Ok(()));
        let slow = Hook::Exec(vec!["sleep".into(), "5".into()]);
        let e = run(&slow, None, Duration::from_millis(200)).await.unwrap_err();
        // Whichever bound fires first, the command's own or the hook's, says so.
        assert!(e.contains("did not finish") || e.contains("timed out"), "{e}");
    }
}
