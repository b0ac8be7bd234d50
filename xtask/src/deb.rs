//! `cargo xtask deb [--bin FLOWTOP] [--out DIR]`: the Debian package,
//! `DIR/flowtop_VERSION-1_ARCH.deb` (DIR defaults to `target/deb`).
//!
//! Built with `dpkg-deb --build` from a staged tree rather than cargo-deb:
//! the package needs maintainer scripts (group, dpkg-statoverride, file
//! capabilities, diversions) that cargo-deb would only copy in anyway, the
//! man page and completions come from `flowtop --generate` (as in `cargo
//! xtask dist`), and dpkg-deb is already on every Debian machine, while
//! cargo-deb would be one more tool to build and pin.
//!
//! Layout:
//! - `/usr/bin/flowtop`, `root:flowtop 0750` through `dpkg-statoverride`,
//!   with the file capabilities [`CAPS`] (set in postinst: dpkg does not
//!   carry extended attributes);
//! - `/usr/share/man/man8/flowtop.8.gz`, completions for bash, zsh, fish;
//! - `/etc/flowtop/*.conf` (conffiles);
//! - `/lib/systemd/system/flowtop-record.service`, not enabled;
//! - `/usr/share/doc/flowtop/` (README, the conf/ notes, copyright, and the
//!   pmacct examples under `examples/pmacct/`).
//!
//! Coexistence with Debian's netsniff-ng, which ships `/usr/sbin/flowtop`
//! and `/usr/share/man/man8/flowtop.8.gz`: both of its paths are diverted
//! (`dpkg-divert --rename`) to `flowtop.netsniff-ng`, so `flowtop` and `man
//! flowtop` give ours for every user whatever their PATH order (root's PATH
//! has /usr/sbin before /usr/bin), and netsniff-ng's own files come back
//! when this package is removed.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _, Result};

use crate::{cmd, dist};

/// File capabilities of /usr/bin/flowtop, the smallest set measured to run
/// `--once` and `--json` with eBPF attribution as a member of the group
/// (README, "Running without sudo"). No DAC-bypassing capability: paths a
/// user names are opened with that user's rights.
pub const CAPS: &str = "cap_net_admin,cap_bpf,cap_perfmon,cap_sys_ptrace=ep";

/// The group whose members may run flowtop.
pub const GROUP: &str = "flowtop";

/// netsniff-ng's files that would clash with ours, and where they are diverted.
const DIVERSIONS: [(&str, &str); 2] = [
    ("/usr/sbin/flowtop", "/usr/sbin/flowtop.netsniff-ng"),
    (
        "/usr/share/man/man8/flowtop.8.gz",
        "/usr/share/man/man8/flowtop.netsniff-ng.8.gz",
    ),
];

pub fn run(args: &[String]) -> Result<()> {
    let mut out_dir = cmd::root_dir().join("target").join("deb");
    let mut given_bin = None;
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        let value = rest.next();
        match (flag.as_str(), value) {
            ("--out", Some(d)) => out_dir = PathBuf::from(d),
            ("--bin", Some(b)) => given_bin = Some(PathBuf::from(b)),
            _ => bail!("usage: cargo xtask deb [--bin FLOWTOP] [--out DIR]"),
        }
    }
    // --bin: package a flowtop already built (the root tests package the
    // binary they test); by default the release build.
    let bin = match given_bin {
        Some(b) => b,
        None => dist::build_release()?,
    };
    let version = dist::version_of(&bin)?;
    let arch = cmd::stdout_of(Command::new("dpkg").arg("--print-architecture"))
        .context("dpkg --print-architecture failed: building the package needs dpkg")?
        .trim()
        .to_owned();
    let stage = out_dir.join("stage");
    if stage.exists() {
        fs::remove_dir_all(&stage).with_context(|| format!("removing {}", stage.display()))?;
    }
    stage_files(&bin, &stage)?;
    let conffiles: Vec<String> = dist::CONF_FILES
        .iter()
        .map(|f| format!("/etc/flowtop/{f}\n"))
        .collect();
    let debian = stage.join("DEBIAN");
    fs::create_dir_all(&debian)?;
    write(&debian.join("conffiles"), &conffiles.concat(), 0o644)?;
    let installed_kib = du_kib(&stage)?;
    write(
        &debian.join("control"),
        &control(&version, &arch, installed_kib),
        0o644,
    )?;
    write(&debian.join("preinst"), &preinst(), 0o755)?;
    write(&debian.join("postinst"), &postinst(), 0o755)?;
    write(&debian.join("postrm"), &postrm(), 0o755)?;
    write_md5sums(&stage)?;

    let deb = out_dir.join(format!("flowtop_{version}-1_{arch}.deb"));
    cmd::run(
        Command::new("dpkg-deb")
            .args(["--root-owner-group", "-Zxz", "--build"])
            .arg(&stage)
            .arg(&deb),
    )?;
    println!("xtask deb: {}", deb.display());
    Ok(())
}

/// The files of the package under `stage`.
fn stage_files(bin: &Path, stage: &Path) -> Result<()> {
    let root = cmd::root_dir();
    let put = |rel: &str| stage.join(rel);
    dist::copy(bin, &put("usr/bin/flowtop"))?;
    set_mode(&put("usr/bin/flowtop"), 0o755)?;
    // As Debian's dh_strip does: the debug information (hundreds of MB in a
    // debug build) is not for the installed binary.
    cmd::run(
        Command::new("strip")
            .arg("--strip-debug")
            .arg(put("usr/bin/flowtop")),
    )?;
    let gen = stage.join("generated");
    for (what, path) in dist::GENERATED {
        dist::generate(bin, what, &gen.join(path))?;
    }
    let man = put("usr/share/man/man8/flowtop.8.gz");
    fs::create_dir_all(man.parent().expect("has a parent"))?;
    // -n: no name or time stamp in the header, so a rebuild is identical.
    let gz = Command::new("gzip")
        .args(["-9nc"])
        .arg(gen.join("man8/flowtop.8"))
        .output()
        .context("running gzip")?;
    if !gz.status.success() {
        bail!("gzip failed: {}", String::from_utf8_lossy(&gz.stderr));
    }
    fs::write(&man, gz.stdout).with_context(|| format!("writing {}", man.display()))?;
    for (from, to) in [
        (
            "completions/flowtop.bash",
            "usr/share/bash-completion/completions/flowtop",
        ),
        (
            "completions/_flowtop",
            "usr/share/zsh/vendor-completions/_flowtop",
        ),
        (
            "completions/flowtop.fish",
            "usr/share/fish/vendor_completions.d/flowtop.fish",
        ),
    ] {
        dist::copy(&gen.join(from), &put(to))?;
    }
    fs::remove_dir_all(&gen)?;
    for f in dist::CONF_FILES {
        dist::copy(&root.join("conf").join(f), &put(&format!("etc/flowtop/{f}")))?;
    }
    // The unit names the binary where the tarball's README installs it;
    // the package has it in /usr/bin.
    let unit = fs::read_to_string(root.join("conf").join(dist::UNIT))?
        .replace("/usr/local/bin/flowtop", "/usr/bin/flowtop");
    write(&put(&format!("lib/systemd/system/{}", dist::UNIT)), &unit, 0o644)?;
    dist::copy(&root.join("README.md"), &put("usr/share/doc/flowtop/README.md"))?;
    dist::copy(
        &root.join("conf/README.md"),
        &put("usr/share/doc/flowtop/conf.md"),
    )?;
    // The IPFIX collector examples (pmacct's primitives for the process
    // fields, an nfacctd configuration), as README's export section names them.
    for f in ["flowtop.primitives", "nfacctd-flowtop.conf"] {
        dist::copy(
            &root.join("conf/pmacct").join(f),
            &put(&format!("usr/share/doc/flowtop/examples/pmacct/{f}")),
        )?;
    }
    let license = cmd::stdout_of(cmd::cargo().args(["metadata", "--no-deps", "--format-version=1"]))
        .and_then(|m| {
            let v: serde_json::Value = serde_json::from_str(&m).ok()?;
            v["packages"]
                .as_array()?
                .iter()
                .find(|p| p["name"] == "flowtop")?["license"]
                .as_str()
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "see README.md".to_owned());
    write(
        &put("usr/share/doc/flowtop/copyright"),
        &format!(
            "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
             Upstream-Name: flowtop\n\nFiles: *\nCopyright: the flowtop authors\nLicense: {license}\n"
        ),
        0o644,
    )?;
    Ok(())
}

fn control(version: &str, arch: &str, installed_kib: u64) -> String {
    format!(
        "Package: flowtop\n\
         Version: {version}-1\n\
         Architecture: {arch}\n\
         Maintainer: flowtop developers <flowtop@localhost>\n\
         Installed-Size: {installed_kib}\n\
         Depends: libc6 (>= 2.34), libgcc-s1, libcap2-bin, passwd\n\
         Recommends: conntrack, nftables\n\
         Section: net\n\
         Priority: optional\n\
         Description: top-like view of conntrack flows and the processes behind them\n \
         flowtop shows the connections the kernel's netfilter conntrack tracks,\n \
         with the process of each (eBPF socket events and /proc), reverse DNS,\n \
         asked-for names and GeoIP; a JSON stream; a journal of ended flows.\n \
         .\n \
         Members of the flowtop group run it without sudo: the binary is\n \
         root:flowtop 0750 with file capabilities ({CAPS}).\n \
         It diverts netsniff-ng's /usr/sbin/flowtop and flowtop.8 while installed.\n"
    )
}

fn preinst() -> String {
    let mut s = String::from(
        "#!/bin/sh\n\
         # flowtop: divert netsniff-ng's flowtop and its man page (restored on removal).\n\
         set -e\n\
         case \"$1\" in\n\
         install|upgrade)\n",
    );
    for (path, to) in DIVERSIONS {
        s.push_str(&format!(
            "    dpkg-divert --package flowtop --add --rename --divert {to} {path} >/dev/null\n"
        ));
    }
    s.push_str("    ;;\nesac\nexit 0\n");
    s
}

fn postinst() -> String {
    format!(
        "#!/bin/sh\n\
         # flowtop: the group, the binary root:{GROUP} 0750, its file capabilities.\n\
         set -e\n\
         if [ \"$1\" = configure ]; then\n\
         \x20   getent group {GROUP} >/dev/null || groupadd --system {GROUP}\n\
         \x20   if ! dpkg-statoverride --list /usr/bin/flowtop >/dev/null; then\n\
         \x20       dpkg-statoverride --update --add root {GROUP} 0750 /usr/bin/flowtop\n\
         \x20   fi\n\
         \x20   # After the statoverride: chown clears file capabilities.\n\
         \x20   if ! setcap {CAPS} /usr/bin/flowtop; then\n\
         \x20       echo \"flowtop: could not set file capabilities on /usr/bin/flowtop (a file system without extended attributes?): members of the {GROUP} group need sudo\" >&2\n\
         \x20   fi\n\
         fi\n\
         exit 0\n"
    )
}

fn postrm() -> String {
    let mut s = String::from(
        "#!/bin/sh\n\
         # flowtop: undo what preinst and postinst did; purge removes the group and\n\
         # what flowtop wrote as root (journal, GeoIP databases, state file).\n\
         set -e\n\
         case \"$1\" in\n\
         remove|purge|abort-install|disappear)\n\
         \x20   if dpkg-statoverride --list /usr/bin/flowtop >/dev/null; then\n\
         \x20       dpkg-statoverride --remove /usr/bin/flowtop\n\
         \x20   fi\n",
    );
    for (path, to) in DIVERSIONS {
        s.push_str(&format!(
            "    dpkg-divert --package flowtop --remove --rename --divert {to} {path} >/dev/null\n"
        ));
    }
    s.push_str(&format!(
        "    ;;\n\
         esac\n\
         if [ \"$1\" = purge ]; then\n\
         \x20   rm -rf /var/lib/flowtop /run/flowtop\n\
         \x20   if getent group {GROUP} >/dev/null; then\n\
         \x20       groupdel {GROUP}\n\
         \x20   fi\n\
         fi\n\
         exit 0\n"
    ));
    s
}

fn write(path: &Path, text: &str, mode: u32) -> Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    set_mode(path, mode)
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {mode:o} {}", path.display()))
}

/// Installed size in KiB (the files, not DEBIAN/).
fn du_kib(stage: &Path) -> Result<u64> {
    let mut total = 0;
    for f in files_under(stage)? {
        total += fs::metadata(stage.join(&f))?.len().div_ceil(1024);
    }
    Ok(total)
}

/// DEBIAN/md5sums: what `dpkg --verify` checks.
fn write_md5sums(stage: &Path) -> Result<()> {
    let files = files_under(stage)?;
    let out = Command::new("md5sum")
        .args(&files)
        .current_dir(stage)
        .output()
        .context("running md5sum")?;
    if !out.status.success() {
        bail!("md5sum failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    fs::write(stage.join("DEBIAN/md5sums"), out.stdout)?;
    Ok(())
}

/// The regular files under `stage` but DEBIAN/, as relative paths, sorted.
fn files_under(stage: &Path) -> Result<Vec<PathBuf>> {
    fn walk(dir: &Path, base: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            let rel = path.strip_prefix(base).expect("under base").to_path_buf();
            if rel.starts_with("DEBIAN") {
                continue;
            }
            if path.is_dir() {
                walk(&path, base, out)?;
            } else {
                out.push(rel);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(stage, stage, &mut out)?;
    out.sort();
    Ok(out)
}
