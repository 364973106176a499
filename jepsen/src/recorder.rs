//! The shared, append-only recorder every client worker and the nemesis write into. Times
//! are taken under the lock, so history order and time order agree (checkers rely on
//! "a completion recorded before an invocation happened before it").

use std::sync::Mutex;
use std::time::Instant;

use crate::history::{Call, History, OpType};

pub struct Recorder {
    start: Instant,
    history: Mutex<History>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder { start: Instant::now(), history: Mutex::new(History::default()) }
    }

    /// Appends one record stamped with the current time.
    pub fn record(&self, process: i64, kind: OpType, node: &str, call: Call, error: Option<String>) {
        let mut history = self.history.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let time_ns = self.start.elapsed().as_nanos() as u64;
        history.push(time_ns, process, kind, node, call, error);
    }

    pub fn invoke(&self, process: i64, node: &str, call: Call) {
        self.record(process, OpType::Invoke, node, call, None);
    }

    /// Seconds since the test started.
    pub fn elapsed_s(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// A copy of everything recorded so far.
    pub fn snapshot(&self) -> History {
        self.history.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
}
