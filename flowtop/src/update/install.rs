//! Unpacking, verifying and installing a downloaded database.
//!
//! Installing is atomic: a temporary file in the target directory
//! (O_CREAT|O_EXCL|O_NOFOLLOW, mode 0644), written and fsynced, renamed over
//! the final name, then the directory fsynced. Readers see the old file or
//! the new one, never a mix; a failure at any step removes the temporary
//! file and leaves the old database as it was (a run killed while writing
//! leaves its temporary file; the next run removes it). A final path that is a
//! symbolic link is refused (root writing through a link planted in a
//! shared directory would overwrite whatever it points at).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::enrich::geoip::{self, DbKind};

/// Largest uncompressed database accepted.
pub const MAX_UNPACKED: u64 = 1 << 30;

/// How a remote file is packed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A bare `.mmdb`.
    Mmdb,
    /// `.mmdb.gz`.
    Gz,
    /// MaxMind's `.tar.gz`: a directory holding the `.mmdb` (and licence
    /// files).
    TarGz,
}

impl Format {
    pub fn of(name: &str) -> Format {
        if name.ends_with(".tar.gz") {
            Format::TarGz
        } else if name.ends_with(".gz") {
            Format::Gz
        } else {
            Format::Mmdb
        }
    }
}

fn read_capped(r: impl Read, what: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    r.take(MAX_UNPACKED + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("{what}: {e}"))?;
    if out.len() as u64 > MAX_UNPACKED {
        return Err(format!("{what}: larger than the {MAX_UNPACKED}-byte limit"));
    }
    Ok(out)
}

/// The `.mmdb` bytes inside a download.
pub fn unpack(format: Format, bytes: Vec<u8>) -> Result<Vec<u8>, String> {
    match format {
        Format::Mmdb => Ok(bytes),
        Format::Gz => read_capped(flate2::read::GzDecoder::new(&bytes[..]), "gunzip"),
        Format::TarGz => {
            let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
            let entries = archive.entries().map_err(|e| format!("tar: {e}"))?;
            for entry in entries {
                let entry = entry.map_err(|e| format!("tar: {e}"))?;
                let is_mmdb = entry.header().entry_type().is_file()
                    && entry
                        .path()
                        .ok()
                        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().ends_with(".mmdb")))
                        .unwrap_or(false);
                if is_mmdb {
                    // Only the bytes are used: names inside the archive
                    // never become paths on this machine.
                    return read_capped(entry, "tar");
                }
            }
            Err("tar: no .mmdb file in the archive".into())
        }
    }
}

/// Opens `bytes` as a MaxMind DB of the expected kind and checks it the way
/// flowtop will use it. Returns a one-line description.
pub fn verify(bytes: &[u8], kind: DbKind) -> Result<String, String> {
    let reader = maxminddb::Reader::from_source(bytes).map_err(|e| format!("not a MaxMind DB file ({e})"))?;
    geoip::validate(&reader, kind)?;
    let m = reader.metadata();
    // The search tree must fit in the file (from_source checks this too;
    // a second, explicit check costs nothing).
    let tree = u64::from(m.node_count) * u64::from(m.record_size) / 4;
    if tree > bytes.len() as u64 {
        return Err(format!("node_count {} does not fit the file", m.node_count));
    }
    let built = std::time::UNIX_EPOCH + std::time::Duration::from_secs(m.build_epoch);
    Ok(format!(
        "{}, IPv{}, built {}",
        m.database_type.escape_debug(),
        m.ip_version,
        humantime::format_rfc3339_seconds(built)
    ))
}

/// Creates `dir` (0755) when missing.
pub fn ensure_dir(dir: &Path) -> Result<(), String> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))
}

/// Removes the temporary file unless it was renamed into place.
struct TempGuard(Option<PathBuf>);

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = fs::remove_file(p);
        }
    }
}

/// Installs `bytes` as `dir/name` atomically (see the module doc).
pub fn install(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, String> {
    let target = dir.join(name);
    match fs::symlink_metadata(&target) {
        Ok(m) if m.file_type().is_symlink() => {
            return Err(format!(
                "{} is a symbolic link; refusing to replace it (remove the link or use --geoip-dir)",
                target.display()
            ))
        }
        Ok(m) if !m.is_file() => return Err(format!("{} is not a regular file", target.display())),
        _ => {}
    }
    remove_stale_temps(dir, name);
    let (tmp, mut file) = create_temp(dir, name)?;
    let mut guard = TempGuard(Some(tmp.clone()));
    let fail = |what: &str, e: std::io::Error| format!("{what} {}: {e}", tmp.display());
    // The mode given to open() is filtered by the umask: set it exactly.
    file.set_permissions(fs::Permissions::from_mode(0o644))
        .map_err(|e| fail("chmod", e))?;
    file.write_all(bytes).map_err(|e| fail("writing", e))?;
    file.sync_all().map_err(|e| fail("fsync", e))?;
    drop(file);
    fs::rename(&tmp, &target)
        .map_err(|e| format!("renaming {} to {}: {e}", tmp.display(), target.display()))?;
    guard.0 = None;
    // The rename is durable once the directory is.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| format!("fsync {}: {e}", dir.display()))?;
    Ok(target)
}

/// Removes the temporary files of runs that were killed while writing
/// (`.NAME.flowtop-PID-N.tmp` whose PID no longer exists).
fn remove_stale_temps(dir: &Path, name: &str) {
    let prefix = format!(".{name}.flowtop-");
    let Ok(entries) = fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let file = e.file_name();
        let Some(pid) = file
            .to_str()
            .and_then(|f| f.strip_prefix(&prefix))
            .and_then(|r| r.strip_suffix(".tmp"))
            .and_then(|r| r.split_once('-'))
            .and_then(|(pid, n)| n.parse::<u32>().ok().and(pid.parse::<u32>().ok()))
        else {
            continue;
        };
        if !Path::new("/proc").join(pid.to_string()).exists() {
            // remove_file never follows a link: at worst it removes one.
            let _ = fs::remove_file(e.path());
        }
    }
}

/// A new file `.NAME.flowtop-PID-N.tmp` in `dir`, never an existing one or
/// a link.
fn create_temp(dir: &Path, name: &str) -> Result<(PathBuf, File), String> {
    let mut last = None;
    for n in 0..100 {
        let tmp = dir.join(format!(".{name}.flowtop-{}-{n}.tmp", std::process::id()));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)
        {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(format!("cannot create a file in {}: {e}", dir.display())),
        }
    }
    Err(format!(
        "cannot create a temporary file in {}: {}",
        dir.display(),
        last.map_or_else(String::new, |e| e.to_string())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowtop_testkit::mmdb::{city_record, Writer};
    use std::os::unix::fs::MetadataExt;

    fn city() -> Vec<u8> {
        let mut w = Writer::new("GeoLite2-City", 6);
        w.insert_cidr("81.2.69.0/24", city_record("GB", "GB", "London"))
            .expect("insert");
        w.to_bytes()
    }

    fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).expect("gzip");
        e.finish().expect("gzip")
    }

    fn tar_gz(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, *data).expect("tar");
        }
        gz(&b.into_inner().expect("tar"))
    }

    #[test]
    fn formats_unpack() {
        let db = city();
        assert_eq!(Format::of("a.mmdb"), Format::Mmdb);
        assert_eq!(Format::of("a.mmdb.gz"), Format::Gz);
        assert_eq!(Format::of("a.tar.gz"), Format::TarGz);
        assert_eq!(unpack(Format::Mmdb, db.clone()), Ok(db.clone()));
        assert_eq!(unpack(Format::Gz, gz(&db)), Ok(db.clone()));
        let t = tar_gz(&[
            ("GeoLite2-City_20261124/COPYRIGHT.txt", b"c"),
            ("GeoLite2-City_20261124/GeoLite2-City.mmdb", &db),
        ]);
        assert_eq!(unpack(Format::TarGz, t), Ok(db.clone()));
        assert!(unpack(Format::TarGz, tar_gz(&[("x/README", b"r")]))
            .expect_err("no mmdb")
            .contains("no .mmdb"));
        assert!(unpack(Format::Gz, db.clone()).is_err(), "not gzip");
        let g = gz(&db);
        assert!(
            unpack(Format::Gz, g[..g.len() / 2].to_vec()).is_err(),
            "truncated gzip"
        );
    }

    #[test]
    fn verify_checks_type_and_validity() {
        let db = city();
        assert!(verify(&db, DbKind::City)
            .expect("valid")
            .starts_with("GeoLite2-City, IPv6, built "));
        assert!(verify(&db, DbKind::Country)
            .expect_err("wrong type")
            .contains("not a Country"));
        assert!(verify(&db[..db.len() - 20], DbKind::City).is_err(), "truncated");
        assert!(verify(b"<html>404</html>", DbKind::City)
            .expect_err("html")
            .contains("not a MaxMind DB"));
    }

    #[test]
    fn install_is_atomic_mode_0644_and_refuses_links() {
        let dir = std::env::temp_dir().join(format!("flowtop-install-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        ensure_dir(&dir.join("sub")).expect("mkdir");
        let dir = dir.join("sub");
        let p = install(&dir, "GeoLite2-City.mmdb", b"one").expect("install");
        assert_eq!(fs::read(&p).expect("read"), b"one");
        assert_eq!(fs::metadata(&p).expect("stat").mode() & 0o777, 0o644);
        let ino = fs::metadata(&p).expect("stat").ino();
        install(&dir, "GeoLite2-City.mmdb", b"two").expect("install");
        assert_eq!(fs::read(&p).expect("read"), b"two");
        assert_ne!(fs::metadata(&p).expect("stat").ino(), ino, "replaced by rename");
        std::os::unix::fs::symlink("/etc/passwd", dir.join("GeoLite2-Country.mmdb")).expect("ln");
        let e = install(&dir, "GeoLite2-Country.mmdb", b"x").expect_err("link refused");
        assert!(e.contains("symbolic link"), "{e}");
        let names: Vec<_> = fs::read_dir(&dir)
            .expect("ls")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "no temporary file left: {names:?}");
        // Left by a killed run: removed; by a live one (this process): kept.
        let stale = dir.join(".GeoLite2-City.mmdb.flowtop-4294967295-0.tmp");
        let live = dir.join(format!(
            ".GeoLite2-City.mmdb.flowtop-{}-77.tmp",
            std::process::id()
        ));
        fs::write(&stale, b"partial").expect("write");
        fs::write(&live, b"partial").expect("write");
        install(&dir, "GeoLite2-City.mmdb", b"three").expect("install");
        assert!(!stale.exists() && live.exists());
        let _ = fs::remove_dir_all(dir.parent().expect("parent"));
    }
}
