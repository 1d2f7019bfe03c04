//! The database's three files (`DB_PATH`, its `-wal` and its `-shm`) as the
//! filesystem has them now, and the rules for when a connection may use
//! them.
//!
//! SQLite holds its files open, so it never notices that someone unlinked
//! or replaced them: it goes on committing into a file nobody will find
//! after a restart. And it writes the `-shm` (the WAL index) through a
//! shared memory mapping, so a `-shm` made immutable or truncated kills the
//! process with SIGBUS on the next write to a clean page. The connection
//! records what the files were when it opened them ([`Snapshot`]); before
//! each use it takes a new snapshot and [`Snapshot::compare`] says whether
//! they are still the same, usable files. One `statx` per file, no open.

use std::fmt;
use std::path::{Path, PathBuf};

/// The paths of the database's files.
#[derive(Debug, Clone)]
pub struct DbFiles {
    main: PathBuf,
    wal: PathBuf,
    shm: PathBuf,
}

impl DbFiles {
    pub fn new(main: &Path) -> DbFiles {
        let with = |suffix: &str| {
            let mut name = main.as_os_str().to_owned();
            name.push(suffix);
            PathBuf::from(name)
        };
        DbFiles {
            main: main.to_path_buf(),
            wal: with("-wal"),
            shm: with("-shm"),
        }
    }

    /// The three files as they are at their paths now.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            main: FileState::at(&self.main),
            wal: FileState::at(&self.wal),
            shm: FileState::at(&self.shm),
        }
    }
}

/// One file as `statx` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileState {
    /// Device and inode: which file this is, whatever its name.
    pub id: (u64, u64),
    pub size: u64,
    /// Immutable or append-only (`chattr +i`, `+a`): writes to it fail,
    /// and writes to a shared mapping of it raise SIGBUS.
    pub frozen: bool,
}

impl FileState {
    /// The file at `path`, or `None` when there is none. An error other
    /// than "not found" (a folder we may not search) counts as missing:
    /// the server cannot use a file it cannot see.
    #[cfg(target_os = "linux")]
    pub fn at(path: &Path) -> Option<FileState> {
        use rustix::fs::{statx, AtFlags, StatxAttributes, StatxFlags, CWD};
        match statx(CWD, path, AtFlags::empty(), StatxFlags::BASIC_STATS) {
            Ok(st) => {
                let dev = (u64::from(st.stx_dev_major) << 32) | u64::from(st.stx_dev_minor);
                Some(FileState {
                    id: (dev, st.stx_ino),
                    size: st.stx_size,
                    frozen: st
                        .stx_attributes
                        .intersects(StatxAttributes::IMMUTABLE | StatxAttributes::APPEND),
                })
            }
            // A kernel (or sandbox) without statx: identity and size only.
            Err(rustix::io::Errno::NOSYS) => Self::from_metadata(path),
            Err(_) => None,
        }
    }

    #[cfg(not(target_os = "linux"))]
    pub fn at(path: &Path) -> Option<FileState> {
        Self::from_metadata(path)
    }

    fn from_metadata(path: &Path) -> Option<FileState> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path).ok()?;
        Some(FileState {
            id: (meta.dev(), meta.ino()),
            size: meta.len(),
            frozen: false,
        })
    }
}

/// The three files at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub main: Option<FileState>,
    pub wal: Option<FileState>,
    pub shm: Option<FileState>,
}

/// The smallest `-shm` SQLite keeps while a connection has it open: one
/// 32 KiB region of the WAL index.
const SHM_REGION: u64 = 32 * 1024;

/// Why the database's files cannot be used as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileProblem {
    /// Nothing at `DB_PATH`.
    Gone,
    /// Another file at `DB_PATH` than the one the connection holds.
    Replaced,
    /// A file is immutable or append-only.
    Frozen,
    /// The `-wal` is missing or another file: commits would go into a log
    /// no restart reads.
    WalChanged,
    /// The `-shm` is missing or another file.
    ShmChanged,
    /// The `-shm` is smaller than SQLite has it mapped.
    ShmTruncated,
}

impl fmt::Display for FileProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileProblem::Gone => "the database file is gone",
            FileProblem::Replaced => "the database file was replaced by another file",
            FileProblem::Frozen => "a database file is immutable or append-only",
            FileProblem::WalChanged => "the database's -wal file was removed or replaced",
            FileProblem::ShmChanged => "the database's -shm file was removed or replaced",
            FileProblem::ShmTruncated => "the database's -shm file was truncated",
        })
    }
}

impl Snapshot {
    fn any_frozen(&self) -> bool {
        [self.main, self.wal, self.shm]
            .iter()
            .flatten()
            .any(|f| f.frozen)
    }

    /// Whether the writer may open a connection: a database file exists
    /// (SQLite would create an empty one in its place) and nothing is
    /// frozen. A missing `-wal` or `-shm` is fine: the writer holds the
    /// only long-lived connection, so SQLite creates them afresh and
    /// rebuilds the index from the log.
    pub fn may_open(&self) -> Result<(), FileProblem> {
        if self.main.is_none() {
            return Err(FileProblem::Gone);
        }
        if self.any_frozen() {
            return Err(FileProblem::Frozen);
        }
        Ok(())
    }

    /// Whether a reader may open a connection beside the writer's: all
    /// three files present, none frozen, and the `-shm` at least one
    /// region long, because a new connection shares the writer's mapping
    /// of it and would touch pages past a truncated end.
    pub fn may_open_beside(&self) -> Result<(), FileProblem> {
        self.may_open()?;
        if self.wal.is_none() {
            return Err(FileProblem::WalChanged);
        }
        match self.shm {
            None => Err(FileProblem::ShmChanged),
            Some(shm) if shm.size < SHM_REGION => Err(FileProblem::ShmTruncated),
            Some(_) => Ok(()),
        }
    }

    /// Whether these files (now) are still the ones of `held` (as the
    /// connection opened them) and safe to write. The first problem found,
    /// the gravest first.
    pub fn compare(&self, held: &Snapshot) -> Result<(), FileProblem> {
        let same = |now: Option<FileState>, then: Option<FileState>| match (now, then) {
            (Some(now), Some(then)) => now.id == then.id,
            (None, None) => true,
            _ => false,
        };
        let Some(main) = self.main else {
            return Err(FileProblem::Gone);
        };
        if !same(Some(main), held.main) {
            return Err(FileProblem::Replaced);
        }
        if self.any_frozen() {
            return Err(FileProblem::Frozen);
        }
        if self.shm_truncated(held) {
            return Err(FileProblem::ShmTruncated);
        }
        if self.wal.is_none() || !same(self.wal, held.wal) {
            return Err(FileProblem::WalChanged);
        }
        if self.shm.is_none() || !same(self.shm, held.shm) {
            return Err(FileProblem::ShmChanged);
        }
        Ok(())
    }

    /// The held `-shm` is still at its path and shorter than it was.
    /// SQLite never shrinks it while a connection has it open.
    fn shm_truncated(&self, held: &Snapshot) -> bool {
        matches!((self.shm, held.shm), (Some(now), Some(then)) if now.id == then.id && now.size < then.size)
    }

    /// Whether the old connection may still checkpoint (copy its log into
    /// the database file) before it is dropped: only when that touches no
    /// frozen file and no truncated mapping.
    pub fn may_checkpoint(&self, held: &Snapshot) -> bool {
        !self.any_frozen() && !self.shm_truncated(held)
    }

    /// `held` updated with what is at the paths now, after a successful
    /// check: the `-shm` grows as the log does.
    pub fn grown(&self, held: &Snapshot) -> Snapshot {
        Snapshot {
            shm: match (self.shm, held.shm) {
                (Some(now), Some(then)) if now.id == then.id && now.size > then.size => Some(now),
                _ => held.shm,
            },
            ..held.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(ino: u64, size: u64) -> Option<FileState> {
        Some(FileState {
            id: (1, ino),
            size,
            frozen: false,
        })
    }

    fn held() -> Snapshot {
        Snapshot {
            main: file(1, 4096),
            wal: file(2, 0),
            shm: file(3, SHM_REGION),
        }
    }

    #[test]
    fn the_same_files_pass() {
        let mut now = held();
        now.main = file(1, 8192);
        now.wal = file(2, 100_000);
        assert_eq!(now.compare(&held()), Ok(()));
    }

    #[test]
    fn a_missing_or_other_database_file_fails_first() {
        let mut now = held();
        now.main = None;
        now.wal = None;
        assert_eq!(now.compare(&held()), Err(FileProblem::Gone));
        now.main = file(9, 4096);
        assert_eq!(now.compare(&held()), Err(FileProblem::Replaced));
    }

    #[test]
    fn a_missing_or_other_wal_or_shm_fails() {
        let mut now = held();
        now.wal = None;
        assert_eq!(now.compare(&held()), Err(FileProblem::WalChanged));
        now.wal = file(9, 0);
        assert_eq!(now.compare(&held()), Err(FileProblem::WalChanged));
        let mut now = held();
        now.shm = None;
        assert_eq!(now.compare(&held()), Err(FileProblem::ShmChanged));
    }

    #[test]
    fn a_frozen_file_fails_and_forbids_a_checkpoint() {
        for which in 0..3 {
            let mut now = held();
            let slot = [&mut now.main, &mut now.wal, &mut now.shm][which]
                .as_mut()
                .unwrap();
            slot.frozen = true;
            assert_eq!(now.compare(&held()), Err(FileProblem::Frozen));
            assert!(!now.may_checkpoint(&held()));
            assert_eq!(now.may_open(), Err(FileProblem::Frozen));
        }
    }

    #[test]
    fn a_shrunk_shm_is_truncated_and_forbids_a_checkpoint() {
        let mut now = held();
        now.shm = file(3, 0);
        assert_eq!(now.compare(&held()), Err(FileProblem::ShmTruncated));
        assert!(!now.may_checkpoint(&held()));
        assert_eq!(now.may_open_beside(), Err(FileProblem::ShmTruncated));
        // An unlinked -shm is not truncated: the mapping is intact.
        now.shm = None;
        assert!(now.may_checkpoint(&held()));
    }

    #[test]
    fn the_writer_may_open_without_wal_and_shm_but_not_without_the_database() {
        let mut now = held();
        now.wal = None;
        now.shm = None;
        assert_eq!(now.may_open(), Ok(()));
        assert_eq!(now.may_open_beside(), Err(FileProblem::WalChanged));
        now.main = None;
        assert_eq!(now.may_open(), Err(FileProblem::Gone));
    }

    #[test]
    fn a_growing_shm_raises_the_size_held() {
        let mut now = held();
        now.shm = file(3, 2 * SHM_REGION);
        let grown = now.grown(&held());
        assert_eq!(grown.shm, file(3, 2 * SHM_REGION));
        assert_eq!(grown.main, held().main);
    }

    #[test]
    fn real_files_are_seen_with_their_identity() {
        let dir = tempfile::TempDir::new().unwrap();
        let files = DbFiles::new(&dir.path().join("chat.db"));
        assert_eq!(files.snapshot().main, None);
        std::fs::write(dir.path().join("chat.db"), b"x").unwrap();
        std::fs::write(dir.path().join("chat.db-wal"), b"").unwrap();
        // Held open, as SQLite holds it, so its inode number is not reused.
        let _open = std::fs::File::open(dir.path().join("chat.db")).unwrap();
        let first = files.snapshot();
        assert_eq!(first.main.map(|f| f.size), Some(1));
        assert!(first.wal.is_some() && first.shm.is_none());
        std::fs::remove_file(dir.path().join("chat.db")).unwrap();
        std::fs::write(dir.path().join("chat.db"), b"y").unwrap();
        assert_eq!(files.snapshot().compare(&first), Err(FileProblem::Replaced));
    }
}
