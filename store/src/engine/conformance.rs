//! One behaviour, two engines: every test here runs against RocksDB and the in-memory twin.

use super::memory::MemoryEngine;
use super::rocks::RocksEngine;
use super::*;

fn engines() -> Vec<(&'static str, Box<dyn KvEngine>, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().unwrap();
    let rocks = RocksEngine::open(dir.path()).unwrap();
    vec![("memory", Box::new(MemoryEngine::new()), None), ("rocksdb", Box::new(rocks), Some(dir))]
}

fn put_all(engine: &dyn KvEngine, cf: Cf, keys: &[&str]) {
    let mut batch = WriteBatch::default();
    for k in keys {
        batch.put(cf, k.as_bytes(), format!("v-{k}").into_bytes());
    }
    engine.write(batch, Durability::Buffered).unwrap();
}

fn collect(view: &dyn ReadView, cf: Cf) -> Vec<String> {
    let mut out = vec![];
    scan(view, cf, b"", None, |k, _| {
        out.push(String::from_utf8(k.to_vec()).unwrap());
        Ok(true)
    })
    .unwrap();
    out
}

#[test]
fn get_put_delete_per_column_family() {
    for (name, engine, _dir) in engines() {
        put_all(&*engine, Cf::Kv, &["a", "b"]);
        put_all(&*engine, Cf::Meta, &["a"]);
        let view = engine.view();
        assert_eq!(view.get(Cf::Kv, b"a").unwrap(), Some(b"v-a".to_vec()), "{name}");
        assert_eq!(view.get(Cf::Revs, b"a").unwrap(), None, "{name}: column families are apart");
        drop(view);
        let mut batch = WriteBatch::default();
        batch.delete(Cf::Kv, b"a".to_vec());
        engine.write(batch, Durability::Sync).unwrap();
        assert_eq!(engine.view().get(Cf::Kv, b"a").unwrap(), None, "{name}");
        assert_eq!(engine.view().get(Cf::Meta, b"a").unwrap(), Some(b"v-a".to_vec()), "{name}");
    }
}

#[test]
fn views_are_isolated_from_later_writes() {
    for (name, engine, _dir) in engines() {
        put_all(&*engine, Cf::Kv, &["a"]);
        let view = engine.view();
        put_all(&*engine, Cf::Kv, &["b"]);
        let mut batch = WriteBatch::default();
        batch.delete(Cf::Kv, b"a".to_vec());
        engine.write(batch, Durability::Buffered).unwrap();
        assert_eq!(collect(&*view, Cf::Kv), vec!["a"], "{name}");
        assert_eq!(collect(&*engine.view(), Cf::Kv), vec!["b"], "{name}");
    }
}

#[test]
fn cursor_seeks_and_steps_both_ways() {
    for (name, engine, _dir) in engines() {
        put_all(&*engine, Cf::Kv, &["b", "d", "f"]);
        let view = engine.view();
        let mut c = view.cursor(Cf::Kv);
        c.seek(b"c");
        assert_eq!(c.key(), b"d", "{name}");
        c.next();
        assert_eq!(c.key(), b"f", "{name}");
        c.next();
        assert!(!c.valid(), "{name}");
        c.seek_for_prev(b"e");
        assert_eq!(c.key(), b"d", "{name}");
        c.prev();
        assert_eq!(c.key(), b"b", "{name}");
        c.prev();
        assert!(!c.valid(), "{name}");
        c.seek_for_prev(b"a");
        assert!(!c.valid(), "{name}");
        c.seek(b"d");
        assert_eq!(c.key(), b"d", "{name}: seek is inclusive");
        c.seek_to_last();
        assert_eq!(c.key(), b"f", "{name}");
        c.seek_to_first();
        assert_eq!(c.key(), b"b", "{name}");
        assert!(c.status().is_ok());
    }
}

#[test]
fn delete_range_is_half_open_and_batches_are_atomic_in_order() {
    for (name, engine, _dir) in engines() {
        put_all(&*engine, Cf::Revs, &["1", "2", "3", "4"]);
        let mut batch = WriteBatch::default();
        batch.delete_range(Cf::Revs, b"2".to_vec(), b"4".to_vec());
        batch.put(Cf::Revs, b"3".to_vec(), b"again".to_vec());
        engine.write(batch, Durability::Buffered).unwrap();
        let view = engine.view();
        assert_eq!(collect(&*view, Cf::Revs), vec!["1", "3", "4"], "{name}");
        assert_eq!(view.get(Cf::Revs, b"3").unwrap(), Some(b"again".to_vec()), "{name}");
    }
}

#[test]
fn scan_respects_bounds_and_early_stop() {
    for (name, engine, _dir) in engines() {
        put_all(&*engine, Cf::Kv, &["a", "b", "c", "d"]);
        let view = engine.view();
        let mut seen = vec![];
        scan(&*view, Cf::Kv, b"b", Some(b"d"), |k, _| {
            seen.push(k.to_vec());
            Ok(true)
        })
        .unwrap();
        assert_eq!(seen, vec![b"b".to_vec(), b"c".to_vec()], "{name}");
        let mut count = 0;
        scan(&*view, Cf::Kv, b"", None, |_, _| {
            count += 1;
            Ok(count < 2)
        })
        .unwrap();
        assert_eq!(count, 2, "{name}");
    }
}

#[test]
fn rocksdb_data_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = RocksEngine::open(dir.path()).unwrap();
        put_all(&engine, Cf::RaftLog, &["x"]);
        engine.sync_wal().unwrap();
    }
    let engine = RocksEngine::open(dir.path()).unwrap();
    assert_eq!(engine.view().get(Cf::RaftLog, b"x").unwrap(), Some(b"v-x".to_vec()));
    assert!(engine.size_bytes() > 0);
}

#[test]
fn checkpoints_are_point_in_time_copies() {
    for (name, engine, _dir) in engines() {
        put_all(&*engine, Cf::Kv, &["a", "b"]);
        put_all(&*engine, Cf::Meta, &["m"]);
        let target = tempfile::tempdir().unwrap();
        let dir = target.path().join("cp");
        engine.checkpoint(&dir).unwrap();
        put_all(&*engine, Cf::Kv, &["c"]);
        let copy = open_checkpoint(&dir).unwrap();
        assert_eq!(collect(&*copy.view(), Cf::Kv), vec!["a", "b"], "{name}");
        assert_eq!(collect(&*copy.view(), Cf::Meta), vec!["m"], "{name}");
    }
}
