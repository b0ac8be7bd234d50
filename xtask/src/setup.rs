//! `cargo xtask setup`: everything flowtop needs to build (with eBPF) and to
//! run its tests, on Debian 12, from apt, rustup and crates.io only.
//!
//! Idempotent: when everything is present it only looks (dpkg-query, rustc,
//! bpf-linker) and returns in well under a second.
//!
//! bpf-linker recipe (found the hard way): `LLVM_PREFIX` must point at
//! Debian's LLVM. Without it bpf-linker's build script takes the prefix of the
//! first `llvm-config` on PATH, which on Debian is `/usr/bin/llvm-config` (the
//! default LLVM 14, if installed) -> prefix `/usr` -> `/usr/lib64`, and the
//! link fails with `unable to find library -lLLVM`. (`LLVM_SYS_*_PREFIX` is
//! not needed: bpf-linker builds llvm-sys with `no-llvm-linking`.)

use std::env;
use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context as _, Result};

use crate::cmd;

/// bpf-linker release that builds on rustc 1.95 and offers `llvm-21/22/23`.
const BPF_LINKER_VERSION: &str = "0.13.0";
const BPF_LINKER_LLVM_MAJORS: [u32; 3] = [21, 22, 23];

/// Test tools: needed by the root-only tests (and for side-by-side runs).
const TEST_PACKAGES: &[&str] = &[
    "conntrack",
    "nftables",
    "iproute2",
    "iptables",
    "netsniff-ng",
    "procps",
    "util-linux",
    "python3",
    "tmux",
    // The attribution scenario suite compiles its C program at run time
    // (libc6-dev: headers; gcc only recommends it).
    "gcc",
    "libc6-dev",
    // The names tests (tests/netns/names.rs): a real DNS server (the
    // package without the service: nothing starts at install), a real TLS
    // server and client, and curl as a program that resolves and connects.
    "dnsmasq-base",
    "openssl",
    "curl",
    // The export tests (tests/netns/export.rs): stock collectors and
    // decoders, never flowtop's own: pmacct's nfacctd, libfixbuf's
    // ipfixDump, and promtool (in the prometheus package) for --metrics.
    "pmacct",
    "libfixbuf-tools",
    "prometheus",
    // The package tests (tests/netns/packaging.rs): `man -w flowtop`, and
    // the package's own dependency for its file capabilities (setcap), which
    // `dpkg -i` does not install; both are absent from minimal images.
    "man-db",
    "libcap2-bin",
];

/// What the caller needs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Everything (`setup`, `run`, `test` as root).
    All,
    /// `test` without root: the root-only tests are skipped, so the test
    /// packages are optional (a warning), the eBPF toolchain is not.
    BuildOnly,
}

/// The rustc toolchain xtask runs under (the one `flowtop/build.rs` uses).
struct Toolchain {
    /// rustup name, e.g. `stable-x86_64-unknown-linux-gnu`.
    name: String,
    sysroot: PathBuf,
    llvm_major: u32,
}

impl Toolchain {
    fn detect() -> Result<Self> {
        let verbose = cmd::stdout_of(Command::new("rustc").arg("-vV"))
            .context("`rustc -vV` failed: is Rust installed (rustup) and on PATH?")?;
        let llvm = verbose
            .lines()
            .find_map(|l| l.strip_prefix("LLVM version: "))
            .context("`rustc -vV` does not report an LLVM version")?;
        let llvm_major = llvm
            .split('.')
            .next()
            .and_then(|m| m.trim().parse().ok())
            .with_context(|| format!("cannot parse rustc's LLVM version {llvm:?}"))?;
        let sysroot = cmd::stdout_of(Command::new("rustc").args(["--print", "sysroot"]))
            .context("`rustc --print sysroot` failed")?;
        let sysroot = PathBuf::from(sysroot.trim());
        let name = env::var("RUSTUP_TOOLCHAIN")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| {
                sysroot
                    .file_name()
                    .map_or_else(|| "stable".to_owned(), |n| n.to_string_lossy().into_owned())
            });
        Ok(Self {
            name,
            sysroot,
            llvm_major,
        })
    }

    fn has_rust_src(&self) -> bool {
        self.sysroot
            .join("lib/rustlib/src/rust/library/core/Cargo.toml")
            .is_file()
    }

    /// rustup components this project needs that are missing (a `minimal`
    /// rustup profile has neither rustfmt nor clippy).
    fn missing_components(&self) -> Vec<&'static str> {
        let bin = self.sysroot.join("bin");
        let mut missing = Vec::new();
        if !self.has_rust_src() {
            missing.push("rust-src");
        }
        if !bin.join("rustfmt").is_file() {
            missing.push("rustfmt");
        }
        if !bin.join("cargo-clippy").is_file() {
            missing.push("clippy");
        }
        missing
    }

    fn llvm_prefix(&self) -> PathBuf {
        PathBuf::from(format!("/usr/lib/llvm-{}", self.llvm_major))
    }

    fn build_packages(&self) -> Vec<String> {
        let m = self.llvm_major;
        vec![
            format!("llvm-{m}-dev"),
            format!("libpolly-{m}-dev"),
            "libzstd-dev".to_owned(),
            "zlib1g-dev".to_owned(),
        ]
    }
}

/// State of the installed bpf-linker.
enum Linker {
    Ok(PathBuf),
    Missing,
    Broken(PathBuf, String),
}

fn check_bpf_linker(tc: &Toolchain) -> Linker {
    let Some(path) = cmd::find_executable("bpf-linker") else {
        return Linker::Missing;
    };
    if cmd::stdout_of(Command::new(&path).arg("--version")).is_none() {
        return Linker::Broken(path, "`bpf-linker --version` fails".to_owned());
    }
    // `--version` does not say which LLVM it uses: look at the libLLVM it
    // loads, else at the features cargo install recorded.
    let want = tc.llvm_major;
    if let Some(ldd) = cmd::stdout_of(Command::new("ldd").arg(&path)) {
        let majors: Vec<u32> = ldd.lines().filter_map(libllvm_major).collect();
        if majors.contains(&want) {
            return Linker::Ok(path);
        }
        if let Some(other) = majors.first() {
            return Linker::Broken(path, format!("it uses LLVM {other}, rustc uses LLVM {want}"));
        }
    }
    let crates2 = fs::read_to_string(cmd::cargo_home().join(".crates2.json")).unwrap_or_default();
    if installed_with_feature(&crates2, "bpf-linker ", &format!("llvm-{want}")) {
        return Linker::Ok(path);
    }
    Linker::Broken(
        path,
        format!("cannot tell whether it uses LLVM {want} like rustc"),
    )
}

/// `libLLVM.so.22.1 => ...` or `libLLVM-22.so => ...` -> 22.
fn libllvm_major(ldd_line: &str) -> Option<u32> {
    let name = ldd_line.split_whitespace().next()?;
    let rest = name
        .strip_prefix("libLLVM.so.")
        .or_else(|| name.strip_prefix("libLLVM-"))?;
    rest.split(['.', '-']).next()?.parse().ok()
}

/// Whether cargo's install record (`.crates2.json`) lists a package whose key
/// starts with `key_prefix` installed with `feature`.
fn installed_with_feature(crates2: &str, key_prefix: &str, feature: &str) -> bool {
    let Some(start) = crates2.find(&format!("\"{key_prefix}")) else {
        return false;
    };
    let entry = &crates2[start..];
    let entry = &entry[..entry.find('}').unwrap_or(entry.len())];
    entry
        .split("\"features\":[")
        .nth(1)
        .and_then(|f| f.split(']').next())
        .is_some_and(|f| f.split(',').any(|x| x.trim().trim_matches('"') == feature))
}

/// Packages of `names` that dpkg does not have installed.
fn missing_packages(names: &[String]) -> Result<Vec<String>> {
    // One call for all; unknown packages make it exit 1 and are just absent
    // from stdout, so the exit status is not checked.
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Package} ${db:Status-Abbrev}\n"])
        .args(names)
        .output()
        .context("cannot run dpkg-query: xtask setup expects Debian (dpkg, apt-get)")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let installed: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(_, status)| status.starts_with("ii"))
        .map(|(pkg, _)| pkg.split(':').next().unwrap_or(pkg))
        .collect();
    Ok(names
        .iter()
        .filter(|n| !installed.contains(&n.as_str()))
        .cloned()
        .collect())
}

fn apt_install(packages: &[String]) -> Result<()> {
    println!("setup: apt-get install {}", packages.join(" "));
    cmd::run(
        Command::new("apt-get")
            .args(["update", "-q"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    cmd::run(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

fn add_components(tc: &Toolchain, components: &[&str]) -> Result<()> {
    let mut add = Command::new("rustup");
    add.args(["component", "add"])
        .args(components)
        .args(["--toolchain", &tc.name]);
    println!("setup: {}", cmd::display(&add));
    cmd::run(&mut add).context("installing rustup components (needs rustup)")?;
    let still = tc.missing_components();
    if !still.is_empty() {
        bail!(
            "still missing under {} after rustup component add: {}",
            tc.sysroot.display(),
            still.join(" ")
        );
    }
    Ok(())
}

fn install_bpf_linker(tc: &Toolchain) -> Result<()> {
    let m = tc.llvm_major;
    if !BPF_LINKER_LLVM_MAJORS.contains(&m) {
        bail!(
            "rustc uses LLVM {m}, bpf-linker {BPF_LINKER_VERSION} supports LLVM {BPF_LINKER_LLVM_MAJORS:?}: \
             update BPF_LINKER_VERSION in xtask/src/setup.rs"
        );
    }
    let prefix = tc.llvm_prefix();
    let feature = format!("llvm-{m}");
    let mut install = cmd::cargo();
    install
        .args([
            "install",
            "bpf-linker",
            "--locked",
            "--force",
            "--version",
            BPF_LINKER_VERSION,
        ])
        .args(["--no-default-features", "--features", &feature])
        .env("LLVM_PREFIX", &prefix);
    println!(
        "setup: LLVM_PREFIX={} {}  (about 1 min)",
        prefix.display(),
        cmd::display(&install)
    );
    let started = Instant::now();
    cmd::run(&mut install).context("installing bpf-linker")?;
    println!(
        "setup: bpf-linker installed in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    match check_bpf_linker(tc) {
        Linker::Ok(_) => Ok(()),
        Linker::Missing => bail!(
            "bpf-linker installed but not found: add {} to PATH",
            cmd::cargo_home().join("bin").display()
        ),
        Linker::Broken(path, why) => bail!("installed {} is not usable: {why}", path.display()),
    }
}

/// Makes sure everything `need` requires is there, installing what is missing
/// (apt packages only as root). Fast and silent but for one line when all is
/// present.
pub fn ensure(need: Need) -> Result<()> {
    let started = Instant::now();
    let root = cmd::is_root();
    let tc = Toolchain::detect()?;
    let build_pkgs = tc.build_packages();
    let test_pkgs: Vec<String> = TEST_PACKAGES.iter().map(|s| (*s).to_owned()).collect();
    let missing_build = missing_packages(&build_pkgs)?;
    let missing_test = missing_packages(&test_pkgs)?;
    let components = tc.missing_components();
    let linker = check_bpf_linker(&tc);

    if let Linker::Ok(path) = &linker {
        if missing_build.is_empty() && missing_test.is_empty() && components.is_empty() {
            println!(
                "setup: all present (toolchain {}, LLVM {}, rust-src/rustfmt/clippy, {}, apt packages) [{:.2} s]",
                tc.name,
                tc.llvm_major,
                path.display(),
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
    }

    // apt first: bpf-linker builds against llvm-N-dev.
    let mut apt: Vec<String> = missing_build.clone();
    if need == Need::All || root {
        apt.extend(missing_test.iter().cloned());
    } else if !missing_test.is_empty() {
        println!(
            "setup: warning: test packages missing (only the root-only tests, skipped now, use them): {}",
            missing_test.join(" ")
        );
    }
    if !apt.is_empty() {
        if !root {
            bail!(
                "missing Debian packages: {pkgs}\n\
                 install them as root:  sudo apt-get install -y {pkgs}\n\
                 then run `cargo xtask setup` again as yourself (rust-src and bpf-linker \
                 go to your own ~/.rustup and ~/.cargo; no root needed for those)",
                pkgs = apt.join(" "),
            );
        }
        apt_install(&apt)?;
    }
    if !components.is_empty() {
        add_components(&tc, &components)?;
    }
    match linker {
        Linker::Ok(_) => {}
        Linker::Missing => {
            println!("setup: bpf-linker not found");
            install_bpf_linker(&tc)?;
        }
        Linker::Broken(path, why) => {
            println!("setup: {} is unusable: {why}; reinstalling", path.display());
            install_bpf_linker(&tc)?;
        }
    }
    println!("setup: done [{:.1} s]", started.elapsed().as_secs_f64());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libllvm_major_reads_both_soname_styles() {
        assert_eq!(
            libllvm_major("\tlibLLVM.so.22.1 => /usr/lib/llvm-22/lib/libLLVM.so.22.1 (0x7f)"),
            Some(22)
        );
        assert_eq!(
            libllvm_major("libLLVM-21.so => /usr/lib/x86_64-linux-gnu/libLLVM-21.so (0x7f)"),
            Some(21)
        );
        assert_eq!(
            libllvm_major("libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x7f)"),
            None
        );
        assert_eq!(libllvm_major("libLLVMfoo.so => x"), None);
    }

    #[test]
    fn crates2_features_are_matched_per_package() {
        let json = r#"{"installs":{"bpf-linker 0.13.0 (registry+https://github.com/rust-lang/crates.io-index)":{"version_req":null,"bins":["bpf-linker"],"features":["llvm-22"],"all_features":false},"other 1.0.0 (x)":{"features":["llvm-23"]}}}"#;
        assert!(installed_with_feature(json, "bpf-linker ", "llvm-22"));
        assert!(!installed_with_feature(json, "bpf-linker ", "llvm-23"));
        assert!(!installed_with_feature(json, "bpf-linker ", "llvm-2"));
        assert!(!installed_with_feature(json, "nothere ", "llvm-22"));
        assert!(!installed_with_feature("", "bpf-linker ", "llvm-22"));
    }
}
