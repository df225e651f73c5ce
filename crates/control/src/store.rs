//! Persistence of the desired state: one JSON file, `state.json`, under a state directory,
//! replaced atomically — written to `state.json.tmp`, fsynced, renamed over the old file, and the
//! directory fsynced so the rename itself is durable (the POSIX recipe: rename(2) is atomic, and
//! without the directory fsync a crash may forget it). A crash at any point leaves either the old
//! or the new file, never a torn one; a leftover temp file is ignored and overwritten.
//!
//! The file is versioned (`{"format": 1, "state": {...}}`); an unknown format is an error rather
//! than a guess. One `Store` per directory and process (no locking against a second writer: the
//! daemon holds the socket, which is the lock). Does blocking file I/O.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::desired::DesiredState;

/// The on-disk format this crate writes.
pub const FORMAT: u32 = 1;

const FILE: &str = "state.json";
const TEMP: &str = "state.json.tmp";

/// Why the store could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: not a podswitch state file: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error("{path}: format {found} is not supported (this build reads format {FORMAT})")]
    Format { path: PathBuf, found: u64 },
}

#[derive(Serialize)]
struct FileRef<'a> {
    format: u32,
    state: &'a DesiredState,
}

#[derive(Deserialize)]
struct FileOwned {
    state: DesiredState,
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// A store in `dir` (created, mode 0700, if missing).
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|source| StoreError::Io {
            path: dir.clone(),
            source,
        })?;
        Ok(Self { dir })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The state file's path.
    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE)
    }

    /// Reads the last saved state; `None` when nothing was ever saved.
    pub fn load(&self) -> Result<Option<DesiredState>, StoreError> {
        let path = self.path();
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StoreError::Io { path, source }),
        };
        decode(&bytes, &path).map(Some)
    }

    /// Saves `state` atomically and durably (see the module docs).
    pub fn save(&self, state: &DesiredState) -> Result<(), StoreError> {
        let body = encode(state).map_err(|message| StoreError::Corrupt {
            path: self.path(),
            message,
        })?;
        let tmp = self.dir.join(TEMP);
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| StoreError::Io { path, source }
        };
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(io(&tmp))?;
        f.write_all(&body).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        drop(f);
        let path = self.path();
        fs::rename(&tmp, &path).map_err(io(&path))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.dir))?;
        Ok(())
    }
}

/// The file's bytes for `state` (format [`FORMAT`]).
pub fn encode(state: &DesiredState) -> Result<Vec<u8>, String> {
    serde_json::to_vec(&FileRef {
        format: FORMAT,
        state,
    })
    .map_err(|e| e.to_string())
}

/// Reads a state file's bytes; `path` only names the file in errors.
pub fn decode(bytes: &[u8], path: &Path) -> Result<DesiredState, StoreError> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
    match value.get("format").and_then(serde_json::Value::as_u64) {
        Some(f) if f == u64::from(FORMAT) => {}
        Some(found) => {
            return Err(StoreError::Format {
                path: path.to_owned(),
                found,
            });
        }
        None => {
            return Err(StoreError::Corrupt {
                path: path.to_owned(),
                message: "no format member".into(),
            });
        }
    }
    let file: FileOwned = serde_json::from_value(value).map_err(|e| StoreError::Corrupt {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    Ok(file.state)
}
