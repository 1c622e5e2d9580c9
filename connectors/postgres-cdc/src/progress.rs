//! The connector's durable progress beside the slot: whether the initial snapshot finished,
//! how far each table's snapshot got (so a crash mid-snapshot resumes at the next chunk),
//! and the visibility fences of resumed snapshot reads.
//!
//! Single writer: the connector's main task. The file is replaced atomically (write to a
//! temporary file, fsync, rename), so a `kill -9` leaves either the old or the new version.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::db::Visibility;
use crate::CdcError;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// The slot this progress belongs to; progress of another slot is ignored.
    pub slot: String,
    /// The slot's consistent point: snapshot reads carry it as their LSN.
    pub snapshot_lsn: u64,
    pub snapshot_done: bool,
    /// Per `schema.table`: the last key a fully acknowledged chunk ended with.
    pub tables: BTreeMap<String, TableProgress>,
    pub fences: Vec<Fence>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TableProgress {
    pub last_key: Option<Vec<String>>,
    pub done: bool,
}

/// Rows a resumed snapshot read outside the slot's exported snapshot: a streamed change to
/// one of them is skipped when its transaction is visible in that read (the row already
/// shows it), until streaming passes `until_lsn` (every such transaction is older).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fence {
    pub table: String,
    pub keys: BTreeSet<Vec<String>>,
    pub visibility: Visibility,
    pub until_lsn: u64,
}

impl Progress {
    pub fn fresh(slot: &str, snapshot_lsn: u64, tables: &[String]) -> Self {
        Self {
            slot: slot.to_string(),
            snapshot_lsn,
            snapshot_done: false,
            tables: tables
                .iter()
                .map(|t| (t.clone(), TableProgress::default()))
                .collect(),
            fences: Vec::new(),
        }
    }

    /// True when a streamed change of `table`/`key` by transaction `xid` is already in a
    /// resumed snapshot read.
    pub fn fenced(&self, table: &str, key: &[String], xid: u32) -> bool {
        self.fences
            .iter()
            .any(|f| f.table == table && f.keys.contains(key) && f.visibility.sees(xid))
    }

    /// Drops fences streaming has passed; true if any was dropped.
    pub fn expire_fences(&mut self, streamed_lsn: u64) -> bool {
        let before = self.fences.len();
        self.fences.retain(|f| f.until_lsn > streamed_lsn);
        before != self.fences.len()
    }
}

pub fn path(state_dir: &Path, connector: &str) -> PathBuf {
    state_dir
        .join("connectors")
        .join(connector)
        .join("progress.json")
}

pub fn load(path: &Path) -> Result<Option<Progress>, CdcError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| CdcError::StateFormat {
                    path: path.to_path_buf(),
                    source,
                })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CdcError::State {
            path: path.to_path_buf(),
            source,
        }),
    }
}

pub fn save(path: &Path, progress: &Progress) -> Result<(), CdcError> {
    use std::io::Write;
    let fail = |source| CdcError::State {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let tmp = path.with_extension("json.tmp");
    let mut file = std::fs::File::create(&tmp).map_err(fail)?;
    file.write_all(&serde_json::to_vec_pretty(progress).expect("progress serializes"))
        .map_err(fail)?;
    file.sync_all().map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)?;
    Ok(())
}

pub fn remove(path: &Path) -> Result<(), CdcError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(CdcError::State {
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_atomically_and_loads_back() {
        let dir = std::env::temp_dir().join(format!("cdc-progress-{}", std::process::id()));
        let file = path(&dir, "c");
        let mut p = Progress::fresh("slot", 42, &["public.t".into()]);
        p.fences.push(Fence {
            table: "public.t".into(),
            keys: [vec!["1".to_string()]].into(),
            visibility: Visibility::parse("10:12:11").unwrap(),
            until_lsn: 100,
        });
        save(&file, &p).unwrap();
        assert_eq!(load(&file).unwrap(), Some(p.clone()));
        assert!(p.fenced("public.t", &["1".into()], 10));
        assert!(!p.fenced("public.t", &["1".into()], 11));
        assert!(!p.fenced("public.t", &["2".into()], 10));
        assert!(!p.expire_fences(99));
        assert!(p.expire_fences(100));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
