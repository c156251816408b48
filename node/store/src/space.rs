//! Where a node's disk goes, table by table: the entries of the replicated state and their
//! bytes as stored (keys as written, values sealed, before RocksDB's compression), counted from
//! the live state ([`crate::StateReader::space_by_table`]) or from a snapshot, a node's
//! checkpoint or a file ([`snapshot_space`], `kizuna admin snapshot-space`), which needs no
//! keys: it counts bytes.

use std::collections::BTreeMap;
use std::path::Path;

use crate::{checkpoint, keys, snapshot};

/// The entries of one table of the replicated state and their bytes as stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableSpace {
    pub table: &'static str,
    pub entries: u64,
    pub key_bytes: u64,
    pub value_bytes: u64,
}

/// Counts entries into their tables, by each key's first byte.
#[derive(Default)]
pub(crate) struct SpaceByTable(BTreeMap<&'static str, TableSpace>);

impl SpaceByTable {
    pub(crate) fn add(&mut self, key: &[u8], value: &[u8]) {
        let table = keys::table_of(key).map_or("(no table)", |t| t.name);
        let space = self.0.entry(table).or_insert(TableSpace { table, ..TableSpace::default() });
        space.entries += 1;
        space.key_bytes += key.len() as u64;
        space.value_bytes += value.len() as u64;
    }

    /// The tables counted, by name.
    pub(crate) fn tables(self) -> Vec<TableSpace> {
        self.0.into_values().collect()
    }
}

/// What each table holds in the snapshot at `path`: a node's checkpoint (a directory, read
/// only) or a snapshot file (checked whole as it is read).
pub fn snapshot_space(path: &Path) -> std::io::Result<Vec<TableSpace>> {
    let mut space = SpaceByTable::default();
    if path.is_dir() {
        checkpoint::read_pairs(path, |key, value| space.add(key, value))?;
    } else {
        snapshot::read_raw(path, |key, value| {
            space.add(key, value);
            Ok(())
        })?;
    }
    Ok(space.tables())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_count_in_the_table_their_first_byte_names() {
        let mut space = SpaceByTable::default();
        space.add(&keys::id(keys::POSTS, 1), b"twelve bytes");
        space.add(&keys::id(keys::POSTS, 2), b"four");
        space.add(b"\x7fnot a table", b"");
        let tables = space.tables();
        let posts = tables.iter().find(|t| t.table == "posts").expect("posts counted");
        assert_eq!((posts.entries, posts.key_bytes, posts.value_bytes), (2, 18, 16));
        assert!(tables.iter().any(|t| t.table == "(no table)" && t.entries == 1));
    }
}
