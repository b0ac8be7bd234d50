//! Command-line behaviour that needs neither root nor a kernel conntrack:
//! these run in plain `cargo test`, as any user.

use std::process::Command;

fn flowtop(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_flowtop"))
        .args(args)
        .output()
        .expect("flowtop runs")
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn version_short_and_long() {
    for flag in ["-v", "--version"] {
        let o = flowtop(&[flag]);
        assert!(o.status.success(), "{flag}: {}", stderr(&o));
        assert_eq!(
            stdout(&o).trim(),
            format!("flowtop {}", env!("CARGO_PKG_VERSION"))
        );
    }
}

#[test]
fn help_lists_every_flag_of_the_original() {
    let o = flowtop(&["-h"]);
    assert!(o.status.success());
    let help = stdout(&o);
    for (short, long) in [
        ("-4", "--ipv4"),
        ("-6", "--ipv6"),
        ("-T", "--tcp"),
        ("-U", "--udp"),
        ("-D", "--dccp"),
        ("-I", "--icmp"),
        ("-S", "--sctp"),
        ("-n", "--no-dns"),
        ("-G", "--no-geoip"),
        ("-s", "--show-src"),
        ("-b", "--bits"),
        ("-u", "--update"),
        ("-t", "--interval"),
        ("-v", "--version"),
        ("-h", "--help"),
    ] {
        assert!(
            help.contains(&format!("{short}, {long}")),
            "missing {short}, {long} in:\n{help}"
        );
    }
    assert_eq!(stdout(&flowtop(&["--help"])), help);
}

#[test]
fn bad_usage_exits_2_with_a_message() {
    let o = flowtop(&["--no-such-flag"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--no-such-flag"));
    let o = flowtop(&["-t", "0"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("interval"), "{}", stderr(&o));
    // A configuration directory that is not there is a typo, not a default.
    let o = flowtop(&["--once", "--conf-dir", "/nonexistent"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--conf-dir /nonexistent"), "{}", stderr(&o));
}

#[test]
fn screen_without_a_terminal_and_update_are_refused_honestly() {
    // stdout is a pipe here: the screen needs a terminal and says what to use instead.
    let o = flowtop(&[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("terminal") && stderr(&o).contains("--once") && stderr(&o).contains("--json"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn generate_prints_the_man_page_and_completions() {
    let o = flowtop(&["--generate", "man"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains(".TH flowtop 8"), "{}", stdout(&o));
    for shell in ["bash", "zsh", "fish"] {
        let o = flowtop(&["--generate", shell]);
        assert_eq!(o.status.code(), Some(0), "{shell}: {}", stderr(&o));
        assert!(stdout(&o).contains("show-src"), "{shell}");
    }
    let o = flowtop(&["--generate", "nroff"]);
    assert_eq!(o.status.code(), Some(2));
    // Not a user-facing flag: the help does not offer it.
    assert!(!stdout(&flowtop(&["--help"])).contains("generate"));
}
