//! `./xtask.sh`, the quick start's entry point on a machine with no Rust:
//! with `HOME`, `CARGO_HOME` and `RUSTUP_HOME` at empty directories and no
//! cargo on PATH, it must fetch rustup-init and run it for the pinned
//! toolchain, then run `cargo xtask ARGS` with the cargo it installed.
//!
//! The network side is replaced by stand-ins on PATH: a `curl` that checks
//! it is asked for rustup-init and writes an installer, which checks
//! its arguments (`-y`, `--default-toolchain 1.95.0`) and installs a `cargo`
//! that records how it was called. A real download of the toolchain and a
//! full build are too slow for every test run (see the README, "Install").

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../xtask.sh")
}

fn executable(path: &Path, text: &str) {
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// A PATH of `bin` plus the system directories, without any cargo.
fn path_without_cargo(bin: &Path) -> String {
    for dir in ["/usr/bin", "/bin", "/usr/local/bin"] {
        assert!(
            !Path::new(dir).join("cargo").exists(),
            "{dir}/cargo exists: this test needs a PATH without cargo"
        );
    }
    format!("{}:/usr/local/bin:/usr/bin:/bin", bin.display())
}

#[test]
fn without_cargo_the_script_installs_the_pinned_toolchain_then_runs_xtask() {
    let tmp = std::env::temp_dir().join(format!("flowtop-bootstrap-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    let (home, cargo_home, rustup_home, fake) = (
        tmp.join("home"),
        tmp.join("cargo"),
        tmp.join("rustup"),
        tmp.join("fakebin"),
    );
    for d in [&home, &cargo_home, &rustup_home, &fake] {
        fs::create_dir_all(d).unwrap();
    }
    let log = tmp.join("log");
    // The installer rustup's site would serve, reduced to what the script
    // relies on: $CARGO_HOME/bin/cargo and $CARGO_HOME/env.
    executable(
        &fake.join("curl"),
        &format!(
            r#"#!/bin/sh
echo "curl $*" >> {log}
case "$*" in *https://static.rust-lang.org/rustup/dist/*-unknown-linux-gnu/rustup-init*) ;; *) echo "unexpected URL: $*" >&2; exit 22;; esac
[ -n "$FAIL_DOWNLOAD" ] && {{ echo "curl: (6) Could not resolve host: static.rust-lang.org" >&2; exit 6; }}
for out; do :; done
{{ echo '#!/bin/sh'; cat; }} > "$out" <<'INSTALLER'
echo "installer $*" >> {log}
case "$*" in *"-y"*"--default-toolchain 1.95.0"*) ;; *) echo "installer: unexpected arguments: $*" >&2; exit 3;; esac
mkdir -p "$CARGO_HOME/bin" "$RUSTUP_HOME/toolchains/1.95.0-x86_64-unknown-linux-gnu"
printf '#!/bin/sh\necho "cargo $*" >> {log}\n' > "$CARGO_HOME/bin/cargo"
chmod +x "$CARGO_HOME/bin/cargo"
echo 'export PATH="'"$CARGO_HOME"'/bin:$PATH"' > "$CARGO_HOME/env"
INSTALLER
"#,
            log = log.display()
        ),
    );
    let run_with = |args: &[&str], fail_download: &str| {
        Command::new("sh")
            .arg(script())
            .args(args)
            .env_clear()
            .env("HOME", &home)
            .env("CARGO_HOME", &cargo_home)
            .env("RUSTUP_HOME", &rustup_home)
            .env("PATH", path_without_cargo(&fake))
            .env("FAIL_DOWNLOAD", fail_download)
            .output()
            .expect("sh runs")
    };
    let run = |args: &[&str]| run_with(args, "");
    // No network: a clear message, status 1, and nothing run.
    let out = run_with(&["test"], "yes");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("could not download rustup-init"), "{stderr}");
    assert!(!cargo_home.join("bin/cargo").exists());
    assert_eq!(fs::read_to_string(&log).unwrap().lines().count(), 1, "curl only");
    fs::remove_file(&log).unwrap();

    let out = run(&["test"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "xtask.sh test failed: {stderr}");
    assert!(
        stderr.contains("cargo not found; installing rustup with Rust 1.95.0"),
        "it says what it does: {stderr}"
    );
    let first = fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = first.lines().collect();
    assert_eq!(lines.len(), 3, "{first}");
    assert!(
        lines[0].starts_with("curl ") && lines[0].contains("https://static.rust-lang.org/rustup/dist/"),
        "{first}"
    );
    assert!(lines[1].contains("--default-toolchain 1.95.0"), "{first}");
    assert_eq!(lines[2], "cargo xtask test", "{first}");
    assert!(
        rustup_home
            .join("toolchains/1.95.0-x86_64-unknown-linux-gnu")
            .is_dir(),
        "the toolchain goes under RUSTUP_HOME"
    );

    // Once installed, the next run finds cargo through $CARGO_HOME/env and
    // downloads nothing.
    let out = run(&["run", "--", "--once"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let second = fs::read_to_string(&log).unwrap();
    assert_eq!(
        &second[first.len()..],
        "cargo xtask run -- --once\n",
        "second run: {second}"
    );
    let _ = fs::remove_dir_all(&tmp);
}

/// The README's quick start has exactly two commands, each with its own
/// comment; `.ci/run` runs the second (the test command) verbatim, and
/// both go through `./xtask.sh`.
#[test]
fn ci_runs_the_readme_test_command_verbatim() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = fs::read_to_string(root.join("README.md")).unwrap();
    let start = readme
        .find("On a fresh Debian 12 machine")
        .expect("the quick start's opening line");
    let block = readme[start..]
        .split("```")
        .nth(1)
        .expect("the quick start's code block");
    let commands: Vec<&str> = block
        .lines()
        .skip(1) // the fence's language tag
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(commands.len(), 2, "{commands:?}");
    assert!(
        commands.iter().all(|c| c.starts_with("./xtask.sh ")),
        "{commands:?}"
    );
    let ci = fs::read_to_string(root.join(".ci/run")).unwrap();
    assert!(
        ci.lines().any(|l| l.trim() == commands[1]),
        ".ci/run does not run `{}` verbatim:\n{ci}",
        commands[1]
    );
}
