//! The process runtime (phase 2).

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};

use super::{ContainerRecord, LogSource, Runtime, Wake};
use crate::error::Result;

pub struct ProcessRuntime {
    #[allow(dead_code)]
    data_dir: PathBuf,
    #[allow(dead_code)]
    wake: Wake,
}

impl ProcessRuntime {
    pub fn new(data_dir: PathBuf, wake: Wake) -> Result<ProcessRuntime> {
        Ok(ProcessRuntime { data_dir, wake })
    }
}

impl Runtime for ProcessRuntime {
    fn start(&self, _pod: &Pod, _container: &Container, _env: Vec<(String, String)>) {}
    fn stop(&self, _pod_uid: &str, _container: &str, _grace: Duration) {}
    fn containers(&self, _pod_uid: &str) -> Vec<ContainerRecord> {
        Vec::new()
    }
    fn pods(&self) -> Vec<String> {
        Vec::new()
    }
    fn forget(&self, _pod_uid: &str) {}
    fn logs(&self, _namespace: &str, _pod: &str, _container: &str, _previous: bool) -> Option<LogSource> {
        None
    }
    fn record_failure(&self, _pod: &Pod, _container: &Container, _reason: &str, _message: &str) {}
    fn version(&self) -> String {
        format!("process://{}", env!("CARGO_PKG_VERSION"))
    }
}
