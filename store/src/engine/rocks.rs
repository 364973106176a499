//! The RocksDB engine: one database, one column family per [`Cf`], one shared WAL.
//!
//! Durability decisions (each is load-bearing for "acknowledged writes survive kill -9"):
//! * All column families share one WAL, so a synced write — or `sync_wal` — makes every
//!   earlier write durable too, whatever its column family. The Raft log relies on this: it
//!   writes entries unsynced (readable at once) and a group-commit thread syncs the WAL once
//!   for many appends.
//! * WAL recovery mode is `TolerateCorruptedTailRecords`, etcd's policy: a record torn by a
//!   crash in the middle of a write (never acknowledged, because it was never synced) is
//!   dropped; corruption anywhere else fails `open` with a clear error rather than silently
//!   truncating history.
//! * `paranoid_checks` makes RocksDB verify files aggressively on open and treat any
//!   checksum mismatch on read as an error instead of serving bad data.

use std::path::Path;

use rocksdb::{
    BlockBasedOptions, ColumnFamilyDescriptor, DBRawIteratorWithThreadMode, DBRecoveryMode, ErrorKind, Options,
    SnapshotWithThreadMode, WriteOptions, DB,
};

use super::{BatchOp, Cf, Cursor, Durability, KvEngine, ReadView, WriteBatch};
use crate::error::{Result, StoreError};

pub struct RocksEngine {
    db: DB,
}

fn engine_error(context: &'static str, err: rocksdb::Error) -> StoreError {
    match err.kind() {
        ErrorKind::Corruption => StoreError::corrupt(context, err),
        _ => StoreError::Engine { context, message: err.to_string() },
    }
}

impl RocksEngine {
    /// Opens (creating if needed) the database in `dir`.
    pub fn open(dir: &Path) -> Result<RocksEngine> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::io(format!("creating {}", dir.display()), e))?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_paranoid_checks(true);
        opts.set_wal_recovery_mode(DBRecoveryMode::TolerateCorruptedTailRecords);
        opts.increase_parallelism(2);
        // Bound the WAL: RocksDB flushes the column family pinning the oldest WAL file once
        // the total exceeds this, so recovery time and disk use stay bounded.
        opts.set_max_total_wal_size(512 << 20);
        opts.set_keep_log_file_num(4);
        // Writers are few (the Raft log append and the apply path): concurrent memtable
        // inserts buy nothing.
        opts.set_allow_concurrent_memtable_write(false);
        let descriptors = Cf::ALL.iter().map(|cf| {
            let mut cf_opts = Options::default();
            cf_opts.set_write_buffer_size(32 << 20);
            if *cf == Cf::Meta {
                // `applied` and `revision` are rewritten by every entry, piling up versions
                // in the memtable whose skiplist inserts then dominated the apply path. A
                // small memtable stays shallow and flushes cheaply (old versions collapse).
                // (In-place updates would avoid the versions but break snapshot isolation,
                // which reads rely on.)
                cf_opts.set_write_buffer_size(1 << 20);
            }
            if *cf == Cf::RaftLog {
                // Log entries are deleted once a snapshot covers them. A memtable larger than
                // the log written between snapshots (see the byte trigger in `node`) lets
                // most entries be dropped in memory, never written to a table file.
                cf_opts.set_write_buffer_size(128 << 20);
                cf_opts.set_max_write_buffer_number(4);
            }
            if *cf == Cf::Kv {
                // Random-key inserts cost O(log n) in the memtable skiplist: keep it modest.
                cf_opts.set_write_buffer_size(8 << 20);
            }
            if *cf == Cf::Kv {
                // The apply path reads a key's previous value by exact key: a bloom filter
                // lets those point lookups skip table files that cannot hold it.
                let mut table = BlockBasedOptions::default();
                table.set_bloom_filter(10.0, false);
                cf_opts.set_block_based_table_factory(&table);
            }
            ColumnFamilyDescriptor::new(cf.name(), cf_opts)
        });
        let db = DB::open_cf_descriptors(&opts, dir, descriptors)
            .map_err(|e| engine_error("opening the RocksDB database", e))?;
        Ok(RocksEngine { db })
    }

    /// Opens a checkpoint (or any database) without writing to it.
    pub fn open_read_only(dir: &Path) -> Result<RocksEngine> {
        let mut opts = Options::default();
        opts.set_paranoid_checks(true);
        let names = Cf::ALL.iter().map(|cf| cf.name());
        let db =
            DB::open_cf_for_read_only(&opts, dir, names, false).map_err(|e| engine_error("opening a checkpoint", e))?;
        Ok(RocksEngine { db })
    }

    fn handle(&self, cf: Cf) -> &rocksdb::ColumnFamily {
        // Every Cf was created at open; a missing handle is a programming error.
        self.db.cf_handle(cf.name()).expect("column family created at open")
    }
}

impl KvEngine for RocksEngine {
    fn reclaim(&self, cfs: &[Cf]) -> Result<()> {
        // MVCC compaction deletes superseded versions all over the key space, and a log
        // purge deletes a range of entries; RocksDB keeps them (and the tombstones) in the
        // table files until a compaction happens to cover them, which at a modest write
        // rate may take very long.
        for &cf in cfs {
            self.db.compact_range_cf(self.handle(cf), None::<&[u8]>, None::<&[u8]>);
        }
        Ok(())
    }

    fn view(&self) -> Box<dyn ReadView + '_> {
        Box::new(RocksView { engine: self, snapshot: self.db.snapshot() })
    }

    fn write(&self, batch: WriteBatch, durability: Durability) -> Result<()> {
        let mut wb = rocksdb::WriteBatch::default();
        for op in &batch.ops {
            match op {
                BatchOp::Put { cf, key, value } => wb.put_cf(self.handle(*cf), key, value),
                BatchOp::Delete { cf, key } => wb.delete_cf(self.handle(*cf), key),
                BatchOp::DeleteRange { cf, from, to } => wb.delete_range_cf(self.handle(*cf), from, to),
            }
        }
        let mut opts = WriteOptions::default();
        // fsync before acknowledging when asked (votes, snapshot installs); otherwise the
        // write is in the WAL file and a later sync covers it (see module docs).
        opts.set_sync(durability == Durability::Sync);
        self.db.write_opt(wb, &opts).map_err(|e| engine_error("writing a batch", e))
    }

    fn sync_wal(&self) -> Result<()> {
        self.db.flush_wal(true).map_err(|e| engine_error("syncing the WAL", e))
    }

    fn checkpoint(&self, dir: &Path) -> Result<()> {
        // RocksDB flushes the memtables, hard-links the table files and copies the live WAL
        // tail, so the checkpoint is consistent across column families.
        rocksdb::checkpoint::Checkpoint::new(&self.db)
            .and_then(|c| c.create_checkpoint(dir))
            .map_err(|e| engine_error("creating a checkpoint", e))
    }

    fn size_bytes(&self) -> u64 {
        let mut total = 0;
        for cf in Cf::ALL {
            for prop in ["rocksdb.total-sst-files-size", "rocksdb.cur-size-all-mem-tables"] {
                total += self.db.property_int_value_cf(self.handle(cf), prop).ok().flatten().unwrap_or(0);
            }
        }
        total
    }
}

struct RocksView<'a> {
    engine: &'a RocksEngine,
    snapshot: SnapshotWithThreadMode<'a, DB>,
}

impl ReadView for RocksView<'_> {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.snapshot.get_cf(self.engine.handle(cf), key).map_err(|e| engine_error("reading a key", e))
    }

    fn cursor(&self, cf: Cf) -> Box<dyn Cursor + '_> {
        Box::new(RocksCursor { inner: self.snapshot.raw_iterator_cf(self.engine.handle(cf)) })
    }
}

struct RocksCursor<'a> {
    inner: DBRawIteratorWithThreadMode<'a, DB>,
}

impl Cursor for RocksCursor<'_> {
    fn seek(&mut self, key: &[u8]) {
        self.inner.seek(key)
    }
    fn seek_for_prev(&mut self, key: &[u8]) {
        self.inner.seek_for_prev(key)
    }
    fn seek_to_first(&mut self) {
        self.inner.seek_to_first()
    }
    fn seek_to_last(&mut self) {
        self.inner.seek_to_last()
    }
    fn valid(&self) -> bool {
        self.inner.valid()
    }
    fn key(&self) -> &[u8] {
        self.inner.key().expect("cursor not valid")
    }
    fn value(&self) -> &[u8] {
        self.inner.value().expect("cursor not valid")
    }
    fn next(&mut self) {
        self.inner.next()
    }
    fn prev(&mut self) {
        self.inner.prev()
    }
    fn status(&self) -> Result<()> {
        self.inner.status().map_err(|e| engine_error("iterating", e))
    }
}
