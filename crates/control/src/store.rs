//! Persistence of the desired state: a snapshot, `state.json`, plus a journal of the commits made
//! since, `state.journal`, under a state directory.
//!
//! - The **snapshot** is replaced atomically — written to `state.json.tmp`, fsynced, renamed over
//!   the old file, and the directory fsynced so the rename itself is durable (the POSIX recipe:
//!   rename(2) is atomic, and without the directory fsync a crash may forget it). A crash at any
//!   point leaves either the old or the new file, never a torn one.
//! - A **commit** ([`Store::commit`]) appends one record — the new value (or absence) of every
//!   entry it changed, and the generation — to the journal and `fdatasync`s it. The journal file is
//!   preallocated and zero-filled once, so a record overwrites blocks that already exist and the
//!   sync writes data only, not the file's size or extents: one small write instead of
//!   re-serialising and rewriting the whole state (~1 MB with 1 000 policies) twice-synced per
//!   commit. When a record does not fit, the commit writes a new snapshot instead
//!   (compaction) and the journal starts over.
//! - **Epochs** tie records to their snapshot: the snapshot names its journal epoch, every record
//!   carries one and a CRC32c over epoch and payload. Loading replays, from offset 0, the records
//!   of the snapshot's epoch and stops at the first that is not one (a torn last write, zeroes, or
//!   an older epoch's bytes). The journal is never read without its snapshot, and a snapshot is
//!   always written before the first record of its epoch.
//!
//! Invariant: after `commit` returns `Ok`, loading the directory yields exactly the state given.
//! The file is versioned (`{"format": 1, "journal_epoch": E, "state": {...}}`); an unknown format
//! is an error rather than a guess. One `Store` per directory and process (no locking against a
//! second writer: the daemon holds the socket, which is the lock). Does blocking file I/O.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde::{Deserialize, Serialize};

use crate::desired::{DesiredState, NamespaceRecord};
use crate::proto::{EndpointInfo, RemoteSpec, VtepSpec};

/// The on-disk format this crate writes.
pub const FORMAT: u32 = 1;

const FILE: &str = "state.json";
const TEMP: &str = "state.json.tmp";
const JOURNAL: &str = "state.journal";

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
    journal_epoch: u64,
    state: &'a DesiredState,
}

#[derive(Deserialize)]
struct FileOwned {
    /// Files written before the journal existed have none: epoch 0, whose journal is empty.
    #[serde(default)]
    journal_epoch: u64,
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

/// Journal records start with this (little-endian "PSJ1"), then the payload length (u32), the
/// epoch (u64) and CRC32c(epoch ‖ payload) (u32).
const MAGIC: u32 = u32::from_le_bytes(*b"PSJ1");
const RECORD_HEADER: usize = 20;

/// The journal's default preallocated size. With ~1 kB per policy change that is thousands of
/// commits between compactions; a compaction costs one snapshot write.
pub const JOURNAL_BYTES: u64 = 4 << 20;

/// The entries one commit changed: each with its new value, or `None` when removed.
#[derive(Debug, Serialize, Deserialize)]
#[serde(bound(
    serialize = "N: Serialize, E: Serialize, R: Serialize, P: Serialize, V: Serialize",
    deserialize = "N: Deserialize<'de>, E: Deserialize<'de>, R: Deserialize<'de>, \
                   P: Deserialize<'de>, V: Deserialize<'de>"
))]
struct Delta<N, E, R, P, V> {
    generation: u64,
    #[serde(default, rename = "n")]
    namespaces: BTreeMap<String, Option<N>>,
    #[serde(default, rename = "e")]
    endpoints: BTreeMap<String, Option<E>>,
    #[serde(default, rename = "r")]
    remotes: BTreeMap<String, Option<R>>,
    #[serde(default, rename = "p")]
    policies: BTreeMap<String, Option<P>>,
    #[serde(default, rename = "v")]
    vteps: BTreeMap<u32, Option<V>>,
}

type DeltaOwned = Delta<NamespaceRecord, EndpointInfo, RemoteSpec, NetworkPolicy, VtepSpec>;
type DeltaRef<'a> =
    Delta<&'a NamespaceRecord, &'a EndpointInfo, &'a RemoteSpec, &'a NetworkPolicy, &'a VtepSpec>;

fn delta(state: &DesiredState, dirty: impl IntoIterator<Item = Dirty>) -> DeltaRef<'_> {
    let mut d = DeltaRef {
        generation: state.generation,
        namespaces: BTreeMap::new(),
        endpoints: BTreeMap::new(),
        remotes: BTreeMap::new(),
        policies: BTreeMap::new(),
        vteps: BTreeMap::new(),
    };
    for x in dirty {
        match x {
            Dirty::Namespace(k) => {
                let v = state.namespaces.get(&k);
                d.namespaces.insert(k, v);
            }
            Dirty::Endpoint(k) => {
                let v = state.endpoints.get(&k);
                d.endpoints.insert(k, v);
            }
            Dirty::Remote(k) => {
                let v = state.remotes.get(&k);
                d.remotes.insert(k, v);
            }
            Dirty::Policy(k) => {
                let v = state.policies.get(&k);
                d.policies.insert(k, v);
            }
            Dirty::Vtep(k) => {
                d.vteps.insert(k, state.vteps.get(&k));
            }
        }
    }
    d
}

fn apply<K: Ord, V>(map: &mut BTreeMap<K, V>, changes: BTreeMap<K, Option<V>>) {
    for (k, v) in changes {
        match v {
            Some(v) => map.insert(k, v),
            None => map.remove(&k),
        };
    }
}

impl DeltaOwned {
    fn apply_to(self, s: &mut DesiredState) {
        s.generation = self.generation;
        apply(&mut s.namespaces, self.namespaces);
        apply(&mut s.endpoints, self.endpoints);
        apply(&mut s.remotes, self.remotes);
        apply(&mut s.policies, self.policies);
        apply(&mut s.vteps, self.vteps);
    }
}

/// CRC32c over a record's epoch and payload: a record is valid only for the epoch it was written in.
fn record_crc(epoch: u64, payload: &[u8]) -> u32 {
    let crc = podswitch_wire::sctp::crc32c_update(!0, &epoch.to_le_bytes());
    !podswitch_wire::sctp::crc32c_update(crc, payload)
}

/// One record's bytes: header and payload.
fn record(epoch: u64, payload: &[u8]) -> Option<Vec<u8>> {
    let len = u32::try_from(payload.len()).ok()?;
    let crc = record_crc(epoch, payload);
    let mut out = Vec::with_capacity(RECORD_HEADER + payload.len());
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&epoch.to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(payload);
    Some(out)
}

/// The valid record of `epoch` at the start of `bytes`: its payload and total length.
fn read_record(bytes: &[u8], epoch: u64) -> Option<(&[u8], usize)> {
    let word = |at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
    };
    if word(0)? != MAGIC {
        return None;
    }
    let len = usize::try_from(word(4)?).ok()?;
    let e = u64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?);
    let payload = bytes.get(RECORD_HEADER..RECORD_HEADER.checked_add(len)?)?;
    (e == epoch && record_crc(e, payload) == word(16)?).then_some((payload, RECORD_HEADER + len))
}

/// Where the next record goes: the journal's epoch and write offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cursor {
    epoch: u64,
    offset: u64,
}

/// The state directory.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    /// `None` until a load or a compaction has established the journal's position: the first
    /// commit of a store that was never loaded writes a snapshot.
    cursor: Option<Cursor>,
    /// The last epoch seen on disk (a new snapshot takes the next one).
    epoch: u64,
    journal: Option<File>,
    journal_bytes: u64,
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
            cursor: None,
            epoch: 0,
            journal: None,
            journal_bytes: JOURNAL_BYTES,
        })
    }

    /// Sets the journal's size (default [`JOURNAL_BYTES`]); 0 turns the journal off, so that
    /// every commit writes a whole snapshot. Takes effect at the next snapshot.
    pub fn set_journal_bytes(&mut self, bytes: u64) {
        self.journal_bytes = bytes;
        if bytes == 0 {
            self.cursor = None;
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The snapshot file's path.
    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE)
    }

    /// The journal file's path.
    pub fn journal_path(&self) -> PathBuf {
        self.dir.join(JOURNAL)
    }

    /// Reads the last committed state (snapshot plus journal); `None` when nothing was ever
    /// saved. Positions the journal so later commits append after the last valid record.
    pub fn load(&mut self) -> Result<Option<DesiredState>, StoreError> {
        let path = self.path();
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StoreError::Io { path, source }),
        };
        let (mut state, epoch) = decode_file(&bytes, &path)?;
        let jpath = self.journal_path();
        let journal = match fs::read(&jpath) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(source) => {
                return Err(StoreError::Io {
                    path: jpath,
                    source,
                });
            }
        };
        let mut offset = 0usize;
        let mut replayed = 0usize;
        while let Some((payload, len)) = journal.get(offset..).and_then(|b| read_record(b, epoch)) {
            let d: DeltaOwned =
                serde_json::from_slice(payload).map_err(|e| StoreError::Corrupt {
                    path: jpath.clone(),
                    message: format!("record at offset {offset}: {e}"),
                })?;
            d.apply_to(&mut state);
            offset += len;
            replayed += 1;
        }
        if replayed > 0 {
            tracing::info!(
                records = replayed,
                bytes = offset,
                "replayed the state journal"
            );
        }
        self.epoch = epoch;
        // Append only into a journal that exists at full size (blocks allocated, so the sync
        // stays data-only); a store written without one (journal off, or before journals
        // existed) writes a snapshot at its first commit, which creates it.
        self.cursor = (self.journal_bytes > 0 && journal.len() as u64 >= self.journal_bytes)
            .then_some(Cursor {
                epoch,
                offset: offset as u64,
            });
        Ok(Some(state))
    }

    /// Saves all of `state` as a new snapshot (atomically and durably, see the module docs) and
    /// starts a new journal epoch.
    pub fn save(&mut self, state: &DesiredState) -> Result<(), StoreError> {
        self.cursor = None;
        let epoch = self.epoch + 1;
        let body = encode_epoch(state, epoch).map_err(|message| StoreError::Corrupt {
            path: self.path(),
            message,
        })?;
        self.save_bytes(&body)?;
        self.epoch = epoch;
        if self.journal_bytes > 0 {
            self.open_journal()?;
            self.cursor = Some(Cursor { epoch, offset: 0 });
        }
        Ok(())
    }

    /// Makes `state` durable. `dirty` must name every entry changed since the last successful
    /// commit, load or save: they go into one journal record (one `fdatasync`); when the record
    /// does not fit, or the journal's position is unknown, the whole state is saved instead.
    pub fn commit(
        &mut self,
        state: &DesiredState,
        dirty: impl IntoIterator<Item = Dirty>,
    ) -> Result<(), StoreError> {
        let Some(cursor) = self.cursor else {
            return self.save(state);
        };
        let jpath = self.journal_path();
        let payload =
            serde_json::to_vec(&delta(state, dirty)).map_err(|e| StoreError::Corrupt {
                path: jpath.clone(),
                message: e.to_string(),
            })?;
        let Some(rec) = record(cursor.epoch, &payload) else {
            return self.save(state);
        };
        let end = cursor.offset + rec.len() as u64;
        if end > self.journal_bytes {
            return self.save(state);
        }
        let r = self.write_record(cursor.offset, &rec);
        match r {
            Ok(()) => {
                self.cursor = Some(Cursor {
                    epoch: cursor.epoch,
                    offset: end,
                });
                Ok(())
            }
            Err(source) => {
                // The record may be half written: the next commit starts a new epoch.
                self.cursor = None;
                self.journal = None;
                Err(StoreError::Io {
                    path: jpath,
                    source,
                })
            }
        }
    }

    fn write_record(&mut self, offset: u64, rec: &[u8]) -> io::Result<()> {
        use std::os::unix::fs::FileExt as _;
        if self.journal.is_none() {
            self.journal = Some(OpenOptions::new().write(true).open(self.journal_path())?);
        }
        let Some(f) = &self.journal else {
            return Err(io::Error::other("journal not open"));
        };
        f.write_all_at(rec, offset)?;
        // Data only: the blocks exist already (the file is preallocated), so no metadata.
        f.sync_data()
    }

    /// Opens the journal, creating and zero-filling it (durably, directory included) the first
    /// time; a shorter one is extended with zeroes.
    fn open_journal(&mut self) -> Result<(), StoreError> {
        let path = self.journal_path();
        let io = |source| StoreError::Io {
            path: path.clone(),
            source,
        };
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        let len = f.metadata().map_err(io)?.len();
        if len < self.journal_bytes {
            // Real zero blocks, not a sparse hole or unwritten extents: later overwrites then
            // need no allocation, so `fdatasync` does not have to commit metadata.
            use std::os::unix::fs::FileExt as _;
            let zeroes = vec![0u8; 1 << 20];
            let mut at = len;
            while at < self.journal_bytes {
                let n = (self.journal_bytes - at).min(zeroes.len() as u64);
                #[allow(clippy::cast_possible_truncation)] // n <= 1 MiB
                f.write_all_at(&zeroes[..n as usize], at).map_err(io)?;
                at += n;
            }
            f.sync_all().map_err(io)?;
            File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(|source| StoreError::Io {
                    path: self.dir.clone(),
                    source,
                })?;
        }
        self.journal = Some(f);
        Ok(())
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
    encode_epoch(state, 0)
}

fn encode_epoch(state: &DesiredState, journal_epoch: u64) -> Result<Vec<u8>, String> {
    serde_json::to_vec(&FileRef {
        format: FORMAT,
        journal_epoch,
        state,
    })
    .map_err(|e| e.to_string())
}

/// Reads a state file's bytes; `path` only names the file in errors.
pub fn decode(bytes: &[u8], path: &Path) -> Result<DesiredState, StoreError> {
    decode_file(bytes, path).map(|(state, _)| state)
}

/// A state file's state and journal epoch.
fn decode_file(bytes: &[u8], path: &Path) -> Result<(DesiredState, u64), StoreError> {
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
    Ok((file.state, file.journal_epoch))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::NamespaceRecord;

    fn with_namespace(s: &mut DesiredState, name: &str, label: &str) -> Dirty {
        s.generation += 1;
        s.namespaces.insert(
            name.into(),
            NamespaceRecord {
                labels: [("v".to_owned(), label.to_owned())].into(),
                v4: None,
                v6: None,
            },
        );
        Dirty::Namespace(name.into())
    }

    fn load(dir: &Path) -> Option<DesiredState> {
        Store::open(dir).unwrap().load().unwrap()
    }

    fn snapshot_epoch(dir: &Path) -> u64 {
        let bytes = fs::read(dir.join(FILE)).unwrap();
        decode_file(&bytes, dir).unwrap().1
    }

    #[test]
    fn commits_replay_exactly_through_compactions() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        // Small enough that the run compacts several times.
        store.set_journal_bytes(2048);
        let mut s = DesiredState::default();
        for i in 0..200u32 {
            let mut dirty = vec![with_namespace(
                &mut s,
                &format!("ns{}", i % 7),
                &i.to_string(),
            )];
            if i % 5 == 0 {
                let gone = format!("ns{}", (i + 3) % 7);
                s.namespaces.remove(&gone);
                dirty.push(Dirty::Namespace(gone));
            }
            store.commit(&s, dirty).unwrap();
            assert_eq!(load(dir.path()).as_ref(), Some(&s), "after commit {i}");
        }
        assert!(
            snapshot_epoch(dir.path()) > 3,
            "the journal filled and was compacted"
        );
        assert_eq!(
            fs::metadata(dir.path().join(JOURNAL)).unwrap().len(),
            2048,
            "preallocated once, never grown"
        );
    }

    #[test]
    fn a_torn_or_corrupt_last_record_is_not_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let mut s = DesiredState::default();
        let d = with_namespace(&mut s, "a", "1");
        store.commit(&s, [d]).unwrap(); // the first commit writes the snapshot
        let d = with_namespace(&mut s, "b", "2");
        store.commit(&s, [d]).unwrap(); // journal record 1
        let after_b = s.clone();
        let first_len = store.cursor.unwrap().offset;
        assert!(first_len > 0, "record 1 went to the journal");
        let d = with_namespace(&mut s, "c", "3");
        store.commit(&s, [d]).unwrap(); // journal record 2
        assert_eq!(load(dir.path()).as_ref(), Some(&s));

        let jpath = dir.path().join(JOURNAL);
        let good = fs::read(&jpath).unwrap();
        #[allow(clippy::cast_possible_truncation)]
        let second = first_len as usize;
        // A flipped payload byte in record 2: CRC mismatch.
        let mut bad = good.clone();
        bad[second + RECORD_HEADER + 3] ^= 0x20;
        fs::write(&jpath, &bad).unwrap();
        assert_eq!(load(dir.path()).as_ref(), Some(&after_b));
        // Record 2 cut short (a crash mid-write): the rest are zeroes.
        let mut torn = good.clone();
        for b in &mut torn[second + RECORD_HEADER + 4..] {
            *b = 0;
        }
        fs::write(&jpath, &torn).unwrap();
        assert_eq!(load(dir.path()).as_ref(), Some(&after_b));

        // A store that loaded the torn journal appends after the last good record.
        let mut reopened = Store::open(dir.path()).unwrap();
        let mut s = reopened.load().unwrap().unwrap();
        let d = with_namespace(&mut s, "d", "4");
        reopened.commit(&s, [d]).unwrap();
        assert_eq!(load(dir.path()).as_ref(), Some(&s));
        assert!(!s.namespaces.contains_key("c"));
    }

    #[test]
    fn a_store_without_a_journal_gets_one_at_its_first_commit() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = DesiredState::default();
        {
            // Written with the journal off: a snapshot and no journal file (as before journals).
            let mut old = Store::open(dir.path()).unwrap();
            old.set_journal_bytes(0);
            let d = with_namespace(&mut s, "a", "1");
            old.commit(&s, [d]).unwrap();
        }
        assert!(!dir.path().join(JOURNAL).exists());
        let mut store = Store::open(dir.path()).unwrap();
        assert_eq!(store.load().unwrap().as_ref(), Some(&s));
        for i in 0..3 {
            let d = with_namespace(&mut s, "b", &i.to_string());
            store.commit(&s, [d]).unwrap();
            assert_eq!(load(dir.path()).as_ref(), Some(&s));
        }
        assert_eq!(
            fs::metadata(dir.path().join(JOURNAL)).unwrap().len(),
            JOURNAL_BYTES
        );
    }

    #[test]
    fn records_of_an_older_epoch_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let mut s = DesiredState::default();
        for i in 0..5 {
            let d = with_namespace(&mut s, &format!("n{i}"), "x");
            store.commit(&s, [d]).unwrap();
        }
        // A new snapshot (epoch + 1) with less in it; the old epoch's records stay on disk.
        s.namespaces.clear();
        s.generation += 1;
        store.save(&s).unwrap();
        assert_eq!(load(dir.path()).as_ref(), Some(&s));
        assert_eq!(s.namespaces.len(), 0);
    }
}
