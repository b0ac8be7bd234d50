//! Builds the eBPF object (`flowtop-ebpf`, target `bpfel-unknown-none`) with
//! aya-build and leaves it in `OUT_DIR/flowtop-ebpf` for `src/ebpf.rs` to embed.
//!
//! The eBPF crate is compiled with the same rustup toolchain that builds
//! flowtop (normally stable), using `-Z build-std=core` unlocked by
//! `RUSTC_BOOTSTRAP=1`; that needs the toolchain's `rust-src` component and a
//! `bpf-linker` on PATH built against the same LLVM major as rustc.
//!
//! When either is missing the build still succeeds: it prints one
//! `cargo:warning=` saying so and how to fix it, and sets
//! `--cfg flowtop_no_ebpf` (with the reason in `FLOWTOP_NO_EBPF_REASON`) so
//! flowtop reports eBPF attribution as unavailable at run time.

use std::env;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

const EBPF_PACKAGE: &str = "flowtop-ebpf";

fn main() {
    println!("cargo::rustc-check-cfg=cfg(flowtop_no_ebpf)");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=PATH");
    println!("cargo::rerun-if-env-changed=FLOWTOP_NO_EBPF");

    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir.parent().expect("flowtop has a parent directory");
    let ebpf_dir = workspace.join(EBPF_PACKAGE);
    let common_dir = workspace.join("flowtop-common");
    // Inputs of the eBPF object (aya-build adds the flowtop-ebpf directory too).
    for dir in [&ebpf_dir, &common_dir] {
        println!("cargo::rerun-if-changed={}", dir.join("Cargo.toml").display());
        println!("cargo::rerun-if-changed={}", dir.join("src").display());
    }
    println!(
        "cargo::rerun-if-changed={}",
        workspace.join("Cargo.lock").display()
    );

    if env::var_os("FLOWTOP_NO_EBPF").is_some_and(|v| v == "1") {
        return no_ebpf("disabled by FLOWTOP_NO_EBPF=1", None);
    }
    // aya-build's own switch would skip the build but leave no object behind.
    println!("cargo::rerun-if-env-changed=AYA_BUILD_SKIP");
    if env::var_os("AYA_BUILD_SKIP").is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true")) {
        return no_ebpf("disabled by AYA_BUILD_SKIP", None);
    }

    // The toolchain running this build; the eBPF crate is built with the same one.
    let toolchain = env::var("RUSTUP_TOOLCHAIN").unwrap_or_else(|_| "stable".to_owned());

    let sysroot = rustc_sysroot();
    if let Some(sysroot) = &sysroot {
        // rustup rewrites this file when components are added or removed.
        let components = sysroot.join("lib/rustlib/components");
        if components.exists() {
            println!("cargo::rerun-if-changed={}", components.display());
        }
    }
    let has_rust_src = sysroot
        .as_ref()
        .is_some_and(|s| s.join("lib/rustlib/src/rust/library/core/Cargo.toml").is_file());

    let bpf_linker = find_on_path("bpf-linker");
    match &bpf_linker {
        // Relink with a reinstalled bpf-linker.
        Some(path) => println!("cargo::rerun-if-changed={}", path.display()),
        // Notice a later `cargo install bpf-linker`.
        None => {
            if let Some(bin) = cargo_bin_dir() {
                println!("cargo::rerun-if-changed={}", bin.display());
            }
        }
    }

    let missing: Vec<&str> = [
        (bpf_linker.is_none(), "bpf-linker not found on PATH"),
        (!has_rust_src, "rust-src component missing for this toolchain"),
    ]
    .into_iter()
    .filter_map(|(missing, what)| missing.then_some(what))
    .collect();
    if !missing.is_empty() {
        return no_ebpf(&missing.join(" and "), Some(&toolchain));
    }

    // Unlock `-Z build-std=core` on stable for the nested cargo that
    // aya-build spawns (it inherits our environment).
    env::set_var("RUSTC_BOOTSTRAP", "1");
    // Without this every line of the nested cargo's progress output would be
    // turned into a cargo warning; compiler diagnostics still come through.
    env::set_var("CARGO_TERM_QUIET", "true");

    let ebpf_dir_str = ebpf_dir.to_str().expect("workspace path is UTF-8");
    let package = aya_build::Package {
        name: EBPF_PACKAGE,
        root_dir: ebpf_dir_str,
        ..Default::default()
    };
    if let Err(err) = aya_build::build_ebpf([package], aya_build::Toolchain::Custom(&toolchain)) {
        // The toolchain is there, so this is a real error in the eBPF code (or
        // a broken toolchain, e.g. an LLVM mismatch): fail loudly.
        panic!(
            "building the eBPF object failed: {err:#}\n\
             (`cargo xtask setup` repairs the toolchain, e.g. a bpf-linker built for another LLVM \
             than rustc's; FLOWTOP_NO_EBPF=1 builds flowtop without eBPF attribution)"
        );
    }
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let object = out_dir.join(EBPF_PACKAGE);
    assert!(object.is_file(), "aya-build did not produce {}", object.display());
}

/// Builds without the eBPF object: one warning, a cfg and the reason.
fn no_ebpf(why: &str, toolchain: Option<&str>) {
    let fix = match toolchain {
        Some(tc) => {
            format!("run `cargo xtask setup` (installs bpf-linker and rust-src for `{tc}`), then rebuild")
        }
        None => "unset FLOWTOP_NO_EBPF / AYA_BUILD_SKIP and rebuild".to_owned(),
    };
    let reason = format!("built without the eBPF object: {why}");
    println!("cargo:warning=eBPF process attribution unavailable: {why}; to enable it, {fix}");
    println!("cargo::rustc-cfg=flowtop_no_ebpf");
    println!("cargo::rustc-env=FLOWTOP_NO_EBPF_REASON={reason}; to enable it, {fix}");
}

fn rustc_sysroot() -> Option<PathBuf> {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| OsString::from("rustc"));
    let out = Command::new(rustc).args(["--print", "sysroot"]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?;
    Some(PathBuf::from(s.trim()))
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn cargo_bin_dir() -> Option<PathBuf> {
    let home = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
    let bin = home.join("bin");
    bin.is_dir().then_some(bin)
}
