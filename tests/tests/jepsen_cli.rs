//! The `berth-jepsen` command line: bad usage is refused with exit code 2 and a message that
//! names the flag, and `check DIR` re-decides a stored history from the file alone (exit 0
//! valid, 1 invalid). Full fault-injection runs are the quick campaign in `scripts/test`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use berth_jepsen::history::{Call, History, OpType};
use berth_jepsen::procs::berth_server_binary;

fn jepsen() -> PathBuf {
    berth_server_binary().expect("binaries built (cargo build --workspace --bins)").with_file_name("berth-jepsen")
}

fn run(args: &[&str]) -> Output {
    Command::new(jepsen()).args(args).output().expect("running berth-jepsen")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_usage_exits_2_naming_the_flag() {
    let out = run(&["test", "--nemesis", "kill,explode", "--time-limit", "1"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("explode"), "{}", stderr(&out));

    let out = run(&["test", "--workload", "bank"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("unknown workload"), "{}", stderr(&out));

    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().to_str().unwrap();
    let out = run(&["test", "--nodes", "1", "--time-limit", "1", "--store", store]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--nodes"), "{}", stderr(&out));
}

/// A register history on one key: write 1 completes, then a read that began after it
/// returns `read_value`.
fn write_then_read(dir: &Path, read_value: Option<i64>) {
    let key = "jepsen/r/0-0".to_string();
    let mut h = History::default();
    h.push(0, 0, OpType::Invoke, "n1", Call::Write { key: key.clone(), value: 1 }, None);
    h.push(10, 0, OpType::Ok, "n1", Call::Write { key: key.clone(), value: 1 }, None);
    h.push(20, 1, OpType::Invoke, "n2", Call::Read { key: key.clone(), value: None }, None);
    h.push(30, 1, OpType::Ok, "n2", Call::Read { key, value: read_value }, None);
    std::fs::create_dir_all(dir).unwrap();
    h.save(&dir.join("history.jsonl")).unwrap();
}

#[test]
fn check_re_decides_a_stored_history() {
    let root = tempfile::tempdir().unwrap();
    let good = root.path().join("good");
    write_then_read(&good, Some(1));
    let out = run(&["check", good.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}\n{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(good.join("index.html").is_file() && good.join("results.json").is_file());

    let stale = root.path().join("stale");
    write_then_read(&stale, None);
    let out = run(&["check", stale.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "a stale read must be invalid: {}", String::from_utf8_lossy(&out.stdout));
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(stale.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["verdict"], "invalid", "{results}");

    let out = run(&["check", root.path().join("missing").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("missing"), "{}", stderr(&out));
}
