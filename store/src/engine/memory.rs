//! In-memory twin of the RocksDB engine, for fast tests.
//!
//! Each column family is a persistent ordered map (`imbl::OrdMap`), so taking a consistent
//! view of all of them is O(1) and views are unaffected by later writes — the same
//! isolation a RocksDB snapshot gives.

use std::ops::Bound;

use imbl::OrdMap;
use parking_lot::Mutex;

use super::{BatchOp, Cf, Cursor, Durability, KvEngine, ReadView, WriteBatch};
use crate::error::{Result, StoreError};

type Table = OrdMap<Vec<u8>, Vec<u8>>;

#[derive(Default)]
pub struct MemoryEngine {
    tables: Mutex<[Table; Cf::ALL.len()]>,
}

impl MemoryEngine {
    pub fn new() -> Self {
        Self::default()
    }
}

impl KvEngine for MemoryEngine {
    fn reclaim(&self, _cfs: &[Cf]) -> Result<()> {
        // Deleted entries leave the maps at once: nothing to give back.
        Ok(())
    }

    fn view(&self) -> Box<dyn ReadView + '_> {
        Box::new(MemoryView { tables: self.tables.lock().clone() })
    }

    fn write(&self, batch: WriteBatch, _durability: Durability) -> Result<()> {
        let mut tables = self.tables.lock();
        for op in batch.ops {
            match op {
                BatchOp::Put { cf, key, value } => {
                    tables[cf.index()].insert(key, value);
                }
                BatchOp::Delete { cf, key } => {
                    tables[cf.index()].remove(&key);
                }
                BatchOp::DeleteRange { cf, from, to } => {
                    let table = &mut tables[cf.index()];
                    let doomed: Vec<Vec<u8>> = table
                        .range::<_, [u8]>((Bound::Included(&from[..]), Bound::Excluded(&to[..])))
                        .map(|(k, _)| k.clone())
                        .collect();
                    for key in doomed {
                        table.remove(&key);
                    }
                }
            }
        }
        Ok(())
    }

    fn sync_wal(&self) -> Result<()> {
        Ok(())
    }

    fn checkpoint(&self, dir: &std::path::Path) -> Result<()> {
        use std::io::Write;
        let tables = self.tables.lock().clone();
        std::fs::create_dir_all(dir).map_err(|e| StoreError::io(format!("creating {}", dir.display()), e))?;
        let mut out = Vec::new();
        for (i, table) in tables.iter().enumerate() {
            for (k, v) in table.iter() {
                out.push(i as u8);
                out.extend_from_slice(&(k.len() as u32).to_be_bytes());
                out.extend_from_slice(k);
                out.extend_from_slice(&(v.len() as u32).to_be_bytes());
                out.extend_from_slice(v);
            }
        }
        let path = dir.join(CHECKPOINT_FILE);
        let mut f =
            std::fs::File::create(&path).map_err(|e| StoreError::io(format!("creating {}", path.display()), e))?;
        f.write_all(&out).and_then(|_| f.sync_all()).map_err(|e| StoreError::io("writing a memory checkpoint", e))
    }

    fn size_bytes(&self) -> u64 {
        let tables = self.tables.lock();
        tables.iter().flat_map(|t| t.iter()).map(|(k, v)| (k.len() + v.len()) as u64).sum()
    }
}

const CHECKPOINT_FILE: &str = "memory-engine.checkpoint";

pub fn is_checkpoint(dir: &std::path::Path) -> bool {
    dir.join(CHECKPOINT_FILE).is_file()
}

impl MemoryEngine {
    /// Reads a checkpoint written by `KvEngine::checkpoint`.
    pub fn load_checkpoint(dir: &std::path::Path) -> Result<MemoryEngine> {
        let bytes =
            std::fs::read(dir.join(CHECKPOINT_FILE)).map_err(|e| StoreError::io("reading a memory checkpoint", e))?;
        let engine = MemoryEngine::new();
        let mut batch = WriteBatch::default();
        let mut at = 0;
        let corrupt = || StoreError::corrupt("memory checkpoint", "truncated");
        let take = |n: usize, at: &mut usize| -> Result<Vec<u8>> {
            let slice = bytes.get(*at..*at + n).ok_or_else(corrupt)?.to_vec();
            *at += n;
            Ok(slice)
        };
        while at < bytes.len() {
            let cf = Cf::from_index(take(1, &mut at)?[0]).ok_or_else(corrupt)?;
            let klen = u32::from_be_bytes(take(4, &mut at)?.try_into().expect("4 bytes")) as usize;
            let key = take(klen, &mut at)?;
            let vlen = u32::from_be_bytes(take(4, &mut at)?.try_into().expect("4 bytes")) as usize;
            let value = take(vlen, &mut at)?;
            batch.put(cf, key, value);
        }
        engine.write(batch, Durability::Buffered)?;
        Ok(engine)
    }
}

struct MemoryView {
    tables: [Table; Cf::ALL.len()],
}

impl ReadView for MemoryView {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.tables[cf.index()].get(key).cloned())
    }

    fn cursor(&self, cf: Cf) -> Box<dyn Cursor + '_> {
        Box::new(MemoryCursor { table: &self.tables[cf.index()], current: None })
    }
}

struct MemoryCursor<'a> {
    table: &'a Table,
    current: Option<(&'a Vec<u8>, &'a Vec<u8>)>,
}

impl<'a> MemoryCursor<'a> {
    fn first_in(&self, bounds: (Bound<&[u8]>, Bound<&[u8]>)) -> Option<(&'a Vec<u8>, &'a Vec<u8>)> {
        self.table.range::<_, [u8]>(bounds).next()
    }
    fn last_in(&self, bounds: (Bound<&[u8]>, Bound<&[u8]>)) -> Option<(&'a Vec<u8>, &'a Vec<u8>)> {
        self.table.range::<_, [u8]>(bounds).next_back()
    }
}

impl Cursor for MemoryCursor<'_> {
    fn seek(&mut self, key: &[u8]) {
        self.current = self.first_in((Bound::Included(key), Bound::Unbounded));
    }
    fn seek_for_prev(&mut self, key: &[u8]) {
        self.current = self.last_in((Bound::Unbounded, Bound::Included(key)));
    }
    fn seek_to_first(&mut self) {
        self.current = self.table.iter().next();
    }
    fn seek_to_last(&mut self) {
        self.current = self.table.iter().next_back();
    }
    fn valid(&self) -> bool {
        self.current.is_some()
    }
    fn key(&self) -> &[u8] {
        self.current.expect("cursor not valid").0
    }
    fn value(&self) -> &[u8] {
        self.current.expect("cursor not valid").1
    }
    fn next(&mut self) {
        if let Some((key, _)) = self.current {
            self.current = self.first_in((Bound::Excluded(&key[..]), Bound::Unbounded));
        }
    }
    fn prev(&mut self) {
        if let Some((key, _)) = self.current {
            self.current = self.last_in((Bound::Unbounded, Bound::Excluded(&key[..])));
        }
    }
    fn status(&self) -> Result<()> {
        Ok(())
    }
}
