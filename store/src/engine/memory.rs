//! In-memory twin of the RocksDB engine, for fast tests.
//!
//! Each column family is a persistent ordered map (`imbl::OrdMap`), so taking a consistent
//! view of all of them is O(1) and views are unaffected by later writes — the same
//! isolation a RocksDB snapshot gives.

use std::ops::Bound;

use imbl::OrdMap;
use parking_lot::Mutex;

use super::{BatchOp, Cf, Cursor, Durability, KvEngine, ReadView, WriteBatch};
use crate::error::Result;

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
    fn view(&self) -> Box<dyn ReadView + '_> {
        Box::new(MemoryView {
            tables: self.tables.lock().clone(),
        })
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

    fn size_bytes(&self) -> u64 {
        let tables = self.tables.lock();
        tables
            .iter()
            .flat_map(|t| t.iter())
            .map(|(k, v)| (k.len() + v.len()) as u64)
            .sum()
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
        Box::new(MemoryCursor {
            table: &self.tables[cf.index()],
            current: None,
        })
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
