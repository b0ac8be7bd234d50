//! SHA-256 of owners' executables, computed off the hot path.
//!
//! [`ExeHasher::digest`] costs a `stat` and a map lookup: it hands back the
//! shared [`ExeDigest`] cell of that file (by device, inode, mtime and size),
//! and queues the file for the hashing thread the first time it is seen. The
//! thread fills the cell when done, so each binary is read once however many
//! processes run it, and a binary replaced in place (new mtime) is hashed
//! again. Nothing waits for it: outputs show null until the cell is filled.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::MetadataExt as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};

use sha2::{Digest as _, Sha256};

use super::ebpf_owners::Generational;
use crate::flow::model::ExeDigest;

/// Files bigger than this are not hashed (their digest stays null): one
/// huge binary must not keep the thread reading for minutes.
pub const MAX_HASH_BYTES: u64 = 512 << 20;
/// Files waiting for the thread; beyond this, requests are dropped (and
/// retried by the next owner of that binary).
const QUEUE: usize = 1024;
/// Half the number of binaries remembered.
const CACHE_HALF: usize = 4096;

/// What identifies one version of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FileKey {
    dev: u64,
    ino: u64,
    mtime_s: i64,
    mtime_ns: i64,
    size: u64,
}

impl FileKey {
    fn of(m: &std::fs::Metadata) -> Self {
        FileKey {
            dev: m.dev(),
            ino: m.ino(),
            mtime_s: m.mtime(),
            mtime_ns: m.mtime_nsec(),
            size: m.size(),
        }
    }
}

struct Job {
    /// Tried in order: `/proc/PID/exe` (the very file the process runs,
    /// in any mount namespace, even deleted), then the path.
    paths: Vec<PathBuf>,
    key: FileKey,
    cell: ExeDigest,
}

/// The hashing thread and its cache of digests by file version.
pub struct ExeHasher {
    cache: Mutex<Generational<FileKey, ExeDigest>>,
    jobs: SyncSender<Job>,
    hashed: Arc<AtomicU64>,
}

impl std::fmt::Debug for ExeHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExeHasher")
            .field("hashed", &self.hashed())
            .finish_non_exhaustive()
    }
}

impl ExeHasher {
    /// Starts the hashing thread (it ends when the hasher is dropped).
    pub fn start() -> std::io::Result<ExeHasher> {
        let (jobs, rx) = sync_channel(QUEUE);
        let hashed = Arc::new(AtomicU64::new(0));
        std::thread::Builder::new()
            .name("flowtop-exehash".into())
            .spawn({
                let hashed = Arc::clone(&hashed);
                move || run(rx, &hashed)
            })?;
        Ok(ExeHasher {
            cache: Mutex::new(Generational::new(CACHE_HALF)),
            jobs,
            hashed,
        })
    }

    /// How many files the thread has hashed (read through) so far.
    pub fn hashed(&self) -> u64 {
        self.hashed.load(Ordering::Relaxed)
    }

    /// The digest cell of `exe` as run by process `pid` (None: not running
    /// any more, or unknown). Never blocks on hashing; a cell that cannot be
    /// filled (file gone, unreadable, too big) stays null.
    pub fn digest(&self, pid: Option<u32>, exe: &str) -> ExeDigest {
        let mut paths = Vec::with_capacity(2);
        if let Some(pid) = pid {
            let link = PathBuf::from(format!("/proc/{pid}/exe"));
            // Only while the process still runs `exe` (not a later exec, not
            // a reused pid).
            let target = std::fs::read_link(&link).ok();
            let same = target.as_ref().is_some_and(|t| {
                let t = t.as_os_str().as_encoded_bytes();
                t == exe.as_bytes() || t.strip_suffix(b" (deleted)") == Some(exe.as_bytes())
            });
            if same {
                paths.push(link);
            }
        }
        paths.push(PathBuf::from(exe));
        let Some(key) = paths
            .iter()
            .find_map(|p| std::fs::metadata(p).ok())
            .filter(|m| m.is_file())
            .map(|m| FileKey::of(&m))
        else {
            return ExeDigest::default();
        };
        let mut cache = match self.cache.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(cell) = cache.get(&key) {
            return cell.clone();
        }
        let cell = ExeDigest::default();
        if key.size > MAX_HASH_BYTES {
            // Remembered as null: not looked at again.
            cache.insert(key, cell.clone());
            return cell;
        }
        match self.jobs.try_send(Job {
            paths,
            key,
            cell: cell.clone(),
        }) {
            Ok(()) => cache.insert(key, cell.clone()),
            // Not remembered: a later owner asks again.
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {}
        }
        cell
    }
}

/// The global hasher of a live run, once [`enable`]d.
static GLOBAL: OnceLock<Option<ExeHasher>> = OnceLock::new();

/// Starts the process-wide hasher (live runs; `--once` shows no digests, it
/// would exit before any is done).
pub fn enable() {
    GLOBAL.get_or_init(|| match ExeHasher::start() {
        Ok(h) => Some(h),
        Err(e) => {
            eprintln!("flowtop: executable hashes unavailable: cannot start a thread: {e}");
            None
        }
    });
}

/// [`ExeHasher::digest`] of the global hasher; a cell that stays null when
/// it is not enabled.
pub fn digest(pid: Option<u32>, exe: Option<&str>) -> ExeDigest {
    match (GLOBAL.get(), exe) {
        (Some(Some(h)), Some(exe)) => h.digest(pid, exe),
        _ => ExeDigest::default(),
    }
}

fn run(rx: Receiver<Job>, hashed: &AtomicU64) {
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(job) = rx.recv() {
        for path in &job.paths {
            let Ok(mut file) = File::open(path) else {
                continue;
            };
            // The file opened must be the version that was asked about.
            if file.metadata().map(|m| FileKey::of(&m)).ok() != Some(job.key) {
                continue;
            }
            if let Some(hex) = sha256_hex(&mut file, &mut buf) {
                hashed.fetch_add(1, Ordering::Relaxed);
                job.cell.set(hex);
            }
            break;
        }
    }
}

/// Streams `r` through SHA-256 (at most [`MAX_HASH_BYTES`]; None beyond,
/// or on a read error).
fn sha256_hex(r: &mut impl Read, buf: &mut [u8]) -> Option<String> {
    let mut h = Sha256::new();
    let mut total = 0u64;
    loop {
        let n = match r.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        };
        total += n as u64;
        if total > MAX_HASH_BYTES {
            return None;
        }
        h.update(&buf[..n]);
    }
    Some(h.finalize().iter().fold(String::with_capacity(64), |mut s, b| {
        use std::fmt::Write as _;
        let _ = write!(s, "{b:02x}");
        s
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant, SystemTime};

    fn wait_filled(cell: &ExeDigest) -> String {
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if let Some(h) = cell.get() {
                return h.to_owned();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("the digest was never filled");
    }

    fn sha256sum(path: &std::path::Path) -> String {
        let out = std::process::Command::new("sha256sum")
            .arg(path)
            .output()
            .expect("sha256sum runs");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .expect("a digest")
            .to_owned()
    }

    #[test]
    fn each_file_version_is_hashed_once_and_matches_sha256sum() {
        let dir = std::env::temp_dir().join(format!("flowtop-exehash-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("ft-bin");
        // Bigger than the read buffer, so the streaming matters.
        let body: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&file, &body).expect("write");
        let path = file.to_str().expect("utf-8 path");
        let h = ExeHasher::start().expect("thread");

        let a = h.digest(None, path);
        let b = h.digest(Some(std::process::id()), path);
        assert!(a.shares_cell_with(&b), "one cell per file version");
        let hex = wait_filled(&a);
        assert_eq!(hex, sha256sum(&file));
        assert_eq!(b.get(), Some(hex.as_str()));
        assert_eq!(h.hashed(), 1);
        // Asked again later: the cache answers, nothing is read.
        assert_eq!(h.digest(None, path).get(), Some(hex.as_str()));
        assert_eq!(h.hashed(), 1);

        // Replaced in place: a new mtime is a new version, hashed again.
        let mut changed = body.clone();
        changed[0] ^= 1;
        std::fs::write(&file, &changed).expect("rewrite");
        let f = File::options().write(true).open(&file).expect("open");
        f.set_modified(SystemTime::now() + Duration::from_secs(5))
            .expect("mtime");
        drop(f);
        let c = h.digest(None, path);
        assert!(!c.shares_cell_with(&a));
        let hex2 = wait_filled(&c);
        assert_eq!(hex2, sha256sum(&file));
        assert_ne!(hex2, hex);
        assert_eq!(h.hashed(), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_missing_file_gives_a_cell_that_stays_null() {
        let h = ExeHasher::start().expect("thread");
        let cell = h.digest(Some(u32::MAX), "/nonexistent/flowtop/bin");
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(cell.get(), None);
        assert_eq!(h.hashed(), 0);
    }

    #[test]
    fn a_running_process_is_hashed_through_proc_exe() {
        let mut child = std::process::Command::new("sleep")
            .arg("10")
            .spawn()
            .expect("sleep");
        let pid = child.id();
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).expect("exe");
        let exe = exe.to_str().expect("utf-8").to_owned();
        let h = ExeHasher::start().expect("thread");
        let cell = h.digest(Some(pid), &exe);
        let hex = wait_filled(&cell);
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(hex, sha256sum(std::path::Path::new(&exe)));
    }
}
