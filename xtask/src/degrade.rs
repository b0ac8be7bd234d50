//! Proves that flowtop builds without the eBPF toolchain: with `bpf-linker`
//! hidden from PATH, `cargo` must still build and test flowtop, print exactly
//! one warning that says eBPF attribution is unavailable, and the binary's
//! no-object test (cfg(flowtop_no_ebpf)) must pass.

use std::env;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context as _, Result};

use crate::cmd;

const WARNING: &str = "eBPF process attribution unavailable";

/// A PATH holding the rust toolchain's proxies but not bpf-linker.
fn path_without_bpf_linker(dir: &Path) -> Result<String> {
    let cargo = env::var_os("CARGO")
        .map(PathBuf::from)
        .context("CARGO is not set")?;
    let cargo_bin = cargo.parent().context("cargo has no directory")?.to_path_buf();
    fs::create_dir_all(dir)?;
    for tool in [
        "cargo",
        "rustc",
        "rustup",
        "rustdoc",
        "cargo-clippy",
        "clippy-driver",
    ] {
        let from = cargo_bin.join(tool);
        let to = dir.join(tool);
        if from.exists() && !to.exists() {
            symlink(&from, &to).with_context(|| format!("linking {}", to.display()))?;
        }
    }
    let rest: Vec<PathBuf> = env::split_paths(&env::var_os("PATH").unwrap_or_default())
        .filter(|p| !p.join("bpf-linker").exists())
        .collect();
    let all = std::iter::once(dir.to_path_buf()).chain(rest);
    Ok(env::join_paths(all)?.to_string_lossy().into_owned())
}

pub fn check() -> Result<()> {
    let root = cmd::root_dir();
    let target = root.join("target").join("no-ebpf-check");
    let path = path_without_bpf_linker(&target.join("bin"))?;
    let mut c = Command::new(target.join("bin").join("cargo"));
    c.current_dir(&root)
        .env("PATH", &path)
        .env_remove("FLOWTOP_NO_EBPF")
        .env_remove("AYA_BUILD_SKIP")
        .args(["test", "-p", "flowtop", "--lib", "--target-dir"])
        .arg(&target)
        .args(["ebpf::", "--", "--test-threads=1"])
        .stdin(Stdio::null());
    let line = cmd::display(&c);
    let out = c.output().with_context(|| format!("cannot start `{line}`"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "`{line}` failed without bpf-linker ({}):\n{stderr}\n{stdout}",
            out.status
        );
    }
    let warnings = stderr.lines().filter(|l| l.contains(WARNING)).count();
    if warnings != 1 {
        bail!("expected exactly one `{WARNING}` warning without bpf-linker, saw {warnings}:\n{stderr}");
    }
    if !stdout.contains("without_the_object_the_status_explains_how_to_get_it ... ok") {
        bail!("the no-object test did not run (was the eBPF object built anyway?):\n{stdout}");
    }
    println!("without bpf-linker: flowtop builds, one warning, eBPF reported unavailable");
    Ok(())
}
