//! Persistence of the desired state: one JSON file, `state.json`, under a state directory,
//! replaced atomically — written to `state.json.tmp`, fsynced, renamed over the old file, and the
//! directory fsynced so the rename itself is durable (the POSIX recipe: rename(2) is atomic, and
//! without the directory fsync a crash may forget it). A crash at any point leaves either the old
//! or the new file, never a torn one; a leftover temp file is ignored and overwritten.
//!
//! Encoding a large state is the expensive part of a commit, so [`Store::save_incremental`]
//! re-serialises only the entries a commit changed and reuses the others' JSON.
//!
//! The file is versioned (`{"format": 1, "state": {...}}`); an unknown format is an error rather
//! than a guess. One `Store` per directory and process (no locking against a second writer: the
//! daemon holds the socket, which is the lock). Does blocking file I/O.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::hash::Hash;
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

/// An entry of the desired state changed since the last save.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dirty {
    Namespace(String),
    Endpoint(String),
    Remote(String),
    Policy(String),
    Vtep(u32),
}

/// Serialised entries of the last save, by section and key.
#[derive(Debug, Clone, Default)]
struct Fragments {
    namespaces: HashMap<String, String>,
    endpoints: HashMap<String, String>,
    remotes: HashMap<String, String>,
    policies: HashMap<String, String>,
    vteps: HashMap<u32, String>,
}

fn section<K: Ord + Clone + Hash + Eq, V: Serialize>(
    out: &mut Vec<u8>,
    name: &str,
    map: &BTreeMap<K, V>,
    cache: &mut HashMap<K, String>,
    key_json: impl Fn(&K) -> String,
) -> Result<(), String> {
    out.extend_from_slice(format!(",\"{name}\":{{").as_bytes());
    for (i, (k, v)) in map.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(key_json(k).as_bytes());
        out.push(b':');
        if let Some(f) = cache.get(k) {
            out.extend_from_slice(f.as_bytes());
        } else {
            let f = serde_json::to_string(v).map_err(|e| e.to_string())?;
            out.extend_from_slice(f.as_bytes());
            cache.insert(k.clone(), f);
        }
    }
    out.push(b'}');
    Ok(())
}

impl Fragments {
    /// The same document as [`encode`], from cached fragments where present.
    fn encode(&mut self, d: &DesiredState) -> Result<Vec<u8>, String> {
        let mut out = Vec::with_capacity(64 * 1024);
        out.extend_from_slice(
            format!(
                "{{\"format\":{FORMAT},\"state\":{{\"generation\":{}",
                d.generation
            )
            .as_bytes(),
        );
        let quoted = |k: &String| serde_json::to_string(k).unwrap_or_default();
        section(
            &mut out,
            "namespaces",
            &d.namespaces,
            &mut self.namespaces,
            quoted,
        )?;
        section(
            &mut out,
            "endpoints",
            &d.endpoints,
            &mut self.endpoints,
            quoted,
        )?;
        section(&mut out, "remotes", &d.remotes, &mut self.remotes, quoted)?;
        section(
            &mut out,
            "policies",
            &d.policies,
            &mut self.policies,
            quoted,
        )?;
        section(&mut out, "vteps", &d.vteps, &mut self.vteps, |k| {
            format!("\"{k}\"")
        })?;
        out.extend_from_slice(b"}}");
        Ok(out)
    }
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    fragments: Fragments,
}

impl Store {
    /// A store in `dir` (created, mode 0700, if missing).
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|source| StoreError::Io {
            path: dir.clone(),
            source,
        })?;
        Ok(Self {
            dir,
            fragments: Fragments::default(),
        })
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

    /// Saves `state` atomically and durably (see the module docs), serialising all of it.
    pub fn save(&self, state: &DesiredState) -> Result<(), StoreError> {
        let body = encode(state).map_err(|message| StoreError::Corrupt {
            path: self.path(),
            message,
        })?;
        self.save_bytes(&body)
    }

    /// Saves `state` like [`Store::save`], re-serialising only the entries named in `dirty`
    /// (and entries never serialised before); the others come from the previous save's
    /// fragments. The caller must name every entry changed since the last successful save and
    /// call [`Store::invalidate`] after a failed one.
    pub fn save_incremental(
        &mut self,
        state: &DesiredState,
        dirty: impl IntoIterator<Item = Dirty>,
    ) -> Result<(), StoreError> {
        for d in dirty {
            match d {
                Dirty::Namespace(k) => self.fragments.namespaces.remove(&k),
                Dirty::Endpoint(k) => self.fragments.endpoints.remove(&k),
                Dirty::Remote(k) => self.fragments.remotes.remove(&k),
                Dirty::Policy(k) => self.fragments.policies.remove(&k),
                Dirty::Vtep(k) => self.fragments.vteps.remove(&k),
            };
        }
        let body = self
            .fragments
            .encode(state)
            .map_err(|message| StoreError::Corrupt {
                path: self.path(),
                message,
            })?;
        let r = self.save_bytes(&body);
        if r.is_err() {
            self.invalidate();
        }
        r
    }

    /// Forgets every cached fragment (the next save serialises everything).
    pub fn invalidate(&mut self) {
        self.fragments = Fragments::default();
    }

    fn save_bytes(&self, body: &[u8]) -> Result<(), StoreError> {
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
        f.write_all(body).map_err(io(&tmp))?;
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
