//! The Debian package of `cargo xtask deb`, installed on this machine and
//! purged again: files, conffiles, the diversion of netsniff-ng's flowtop,
//! the `flowtop` group and the binary's file capabilities, upgrade over an
//! existing install, remove and purge; a member of the group running
//! flowtop without sudo (flows with processes), a user outside it who
//! cannot; and, as a member, paths the user may not read or write refused
//! with a clear error, nothing of their content shown, nothing written.
//!
//! The package is built once per test run with the test binary itself
//! (`cargo xtask deb --bin`: the same debug build the other tests run, eBPF
//! object embedded), or taken from `$FLOWTOP_DEB`. Every test purges the
//! package and removes its users when it ends, failed or not.

use super::*;
use std::io::{BufRead as _, BufReader};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::OnceLock;

/// A member of the `flowtop` group, and a user outside it.
const MEMBER: &str = "ftpkg-member";
const OUTSIDER: &str = "ftpkg-outsider";

const BIN: &str = "/usr/bin/flowtop";
/// What postinst gives the binary (xtask/src/deb.rs `CAPS`), as getcap prints it.
const CAPS: [&str; 4] = ["cap_net_admin", "cap_sys_ptrace", "cap_perfmon", "cap_bpf"];

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"))
}

fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The package file, built once.
fn deb() -> &'static Path {
    static DEB: OnceLock<PathBuf> = OnceLock::new();
    DEB.get_or_init(|| {
        if let Some(p) = std::env::var_os("FLOWTOP_DEB") {
            return PathBuf::from(p);
        }
        let root = flowtop_testkit::fixtures::workspace_dir();
        let out = root.join("target").join("deb-test");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let bin = flowtop_bin();
        ok(Command::new(cargo)
            .current_dir(&root)
            .args(["xtask", "deb", "--bin", bin, "--out"])
            .arg(&out));
        std::fs::read_dir(&out)
            .expect("the package directory")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|x| x == "deb"))
            .expect("cargo xtask deb wrote a .deb")
    })
}

/// The package installed (and test users made) for one test; dropping it
/// purges the package and removes the users, whatever happened.
struct Installed {
    users: Vec<&'static str>,
}

impl Installed {
    fn new() -> Installed {
        let deb = deb();
        purge();
        ok(Command::new("dpkg").arg("-i").arg(deb));
        Installed { users: Vec::new() }
    }

    /// A user with a home directory, maybe in the `flowtop` group.
    fn user(&mut self, name: &'static str, member: bool) {
        let _ = run(Command::new("userdel").args(["-r", name]));
        let mut c = Command::new("useradd");
        c.args(["-m", "-s", "/bin/sh"]);
        if member {
            c.args(["-G", "flowtop"]);
        }
        ok(c.arg(name));
        self.users.push(name);
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        for u in &self.users {
            let _ = run(Command::new("userdel").args(["-r", u]));
        }
        purge();
    }
}

fn purge() {
    let _ = run(Command::new("dpkg").args(["--purge", "flowtop"]));
}

/// `prog args` as `user` in `ns`: runuser's setuid drops every capability
/// of this root process (setpriv would keep them, and with them the right
/// to execute anything), and the environment is the user's HOME and a
/// plain PATH. No sudo.
fn as_user(ns: &Netns, user: &str, prog: &str, args: &[&str]) -> Command {
    let mut c = ns.cmd("runuser");
    c.args(["-u", user, "--", "env", "-i"])
        .arg(format!("HOME=/home/{user}"))
        .arg("PATH=/usr/bin:/bin")
        .arg(prog)
        .args(args);
    c
}

/// The (only) child of `pid`: the program runuser started.
fn child_of(pid: u32) -> Option<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn group_gid(name: &str) -> Option<u32> {
    let out = run(Command::new("getent").args(["group", name]));
    out.status
        .success()
        .then(|| {
            String::from_utf8_lossy(&out.stdout)
                .split(':')
                .nth(2)?
                .trim()
                .parse()
                .ok()
        })
        .flatten()
}

#[test]
#[ignore = "needs root: installs the Debian package with dpkg, then purges it"]
fn package_installs_upgrades_removes_and_purges_cleanly() {
    if !require_root() {
        return;
    }
    // netsniff-ng's files, when it is installed: diverted, then restored.
    let theirs = ["/usr/sbin/flowtop", "/usr/share/man/man8/flowtop.8.gz"];
    let netsniff = Path::new(theirs[0])
        .exists()
        .then(|| ok(Command::new("md5sum").args(theirs)));
    let pkg = Installed::new();

    // Ours for every PATH (root's has /usr/sbin first) and for man.
    let found = ok(Command::new("sh").args(["-c", "command -v flowtop"]).env(
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ));
    assert_eq!(found.trim(), BIN, "flowtop on root's PATH");
    let version = ok(Command::new(BIN).arg("--version"));
    assert!(version.starts_with("flowtop "), "{version}");
    let man = ok(Command::new("man").args(["-w", "flowtop"]));
    assert_eq!(man.trim(), "/usr/share/man/man8/flowtop.8.gz");
    let page = ok(Command::new("sh").args(["-c", "zcat /usr/share/man/man8/flowtop.8.gz"]));
    assert!(page.contains("json"), "our man page (with --json)");
    if netsniff.is_some() {
        assert!(
            Path::new("/usr/sbin/flowtop.netsniff-ng").exists(),
            "netsniff-ng's flowtop diverted"
        );
        assert!(!Path::new("/usr/sbin/flowtop").exists());
        assert!(Path::new("/usr/share/man/man8/flowtop.netsniff-ng.8.gz").exists());
    } else {
        eprintln!("note: netsniff-ng is not installed: its diversion is not checked");
    }
    for f in [
        "/usr/share/bash-completion/completions/flowtop",
        "/usr/share/zsh/vendor-completions/_flowtop",
        "/usr/share/fish/vendor_completions.d/flowtop.fish",
        "/usr/share/doc/flowtop/README.md",
        "/usr/share/doc/flowtop/copyright",
        "/usr/share/doc/flowtop/examples/pmacct/flowtop.primitives",
        "/usr/share/doc/flowtop/examples/pmacct/nfacctd-flowtop.conf",
    ] {
        assert!(Path::new(f).is_file(), "{f} installed");
    }
    let unit = std::fs::read_to_string("/lib/systemd/system/flowtop-record.service").expect("the unit");
    assert!(unit.contains("ExecStart=/usr/bin/flowtop record"), "{unit}");
    assert!(
        !Path::new("/etc/systemd/system/multi-user.target.wants/flowtop-record.service").exists(),
        "the unit is shipped disabled"
    );
    let conffiles = ok(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", "flowtop"]));
    for f in ["tcp.conf", "udp.conf", "sctp.conf", "dccp.conf", "geoip.conf"] {
        assert!(
            conffiles.contains(&format!("/etc/flowtop/{f}")),
            "{f} a conffile: {conffiles}"
        );
    }
    let check_binary = |when: &str| {
        let gid = group_gid("flowtop").unwrap_or_else(|| panic!("{when}: no flowtop group"));
        let m = std::fs::metadata(BIN).expect("the binary");
        assert_eq!(
            (m.uid(), m.gid(), m.mode() & 0o7777),
            (0, gid, 0o750),
            "{when}: root:flowtop 0750"
        );
        let caps = ok(Command::new("getcap").arg(BIN));
        for c in CAPS {
            assert!(caps.contains(c), "{when}: {c} missing in {caps}");
        }
        assert!(
            !caps.contains("cap_sys_admin") && !caps.contains("cap_dac"),
            "{when}: {caps}"
        );
    };
    check_binary("installed");
    let files: Vec<PathBuf> = ok(Command::new("dpkg").args(["-L", "flowtop"]))
        .lines()
        .map(PathBuf::from)
        .filter(|p| p.is_file())
        .collect();
    assert!(files.len() >= 12, "{files:?}");

    // Again over the installed package: the upgrade path keeps it usable.
    ok(Command::new("dpkg").arg("-i").arg(deb()));
    check_binary("reinstalled");

    // Remove: every file but the conffiles (dpkg keeps them until purge),
    // netsniff-ng's files back, no diversion, no stat override.
    ok(Command::new("dpkg").args(["-r", "flowtop"]));
    for f in &files {
        let conffile = f.starts_with("/etc/flowtop");
        // The man page's path is netsniff-ng's again (checked below).
        let restored = netsniff.is_some() && theirs.iter().any(|t| f == Path::new(t));
        assert_eq!(f.exists(), conffile || restored, "{} after dpkg -r", f.display());
    }
    if let Some(sums) = &netsniff {
        assert_eq!(
            &ok(Command::new("md5sum").args(theirs)),
            sums,
            "netsniff-ng's flowtop and man page restored"
        );
    }
    for path in ["/usr/sbin/flowtop", "/usr/share/man/man8/flowtop.8.gz"] {
        let by = ok(Command::new("dpkg-divert").args(["--listpackage", path]));
        assert!(by.trim().is_empty(), "{path} still diverted by {by}");
    }
    assert!(!ok(Command::new("dpkg-statoverride").arg("--list")).contains(BIN));

    // Purge: nothing left, the group gone.
    purge();
    for f in &files {
        let restored = netsniff.is_some() && theirs.iter().any(|t| f == Path::new(t));
        assert!(!f.exists() || restored, "{} after --purge", f.display());
    }
    for d in ["/etc/flowtop", "/usr/share/doc/flowtop", "/var/lib/flowtop"] {
        assert!(!Path::new(d).exists(), "{d} after --purge");
    }
    assert_eq!(group_gid("flowtop"), None, "the group after --purge");
    drop(pkg);
}

/// Reads `child`'s stdout lines as JSON until `pred` holds (or `timeout`).
fn wait_line(
    lines: &std::sync::mpsc::Receiver<String>,
    timeout: Duration,
    mut pred: impl FnMut(&Value) -> bool,
) -> Option<Value> {
    let end = std::time::Instant::now() + timeout;
    while let Some(left) = end.checked_duration_since(std::time::Instant::now()) {
        let Ok(line) = lines.recv_timeout(left) else {
            return None;
        };
        if let Ok(v) = serde_json::from_str::<Value>(&line) {
            if pred(&v) {
                return Some(v);
            }
        }
    }
    None
}

fn stream_lines(child: &mut Child) -> std::sync::mpsc::Receiver<String> {
    let out = child.stdout.take().expect("stdout piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

#[test]
#[ignore = "needs root: installs the Debian package, adds users, network namespaces"]
fn group_members_run_flowtop_without_sudo_and_others_cannot() {
    if !require_root() {
        return;
    }
    let mut pkg = Installed::new();
    pkg.user(MEMBER, true);
    pkg.user(OUTSIDER, false);
    let (client, server) = Netns::pair();
    let _far = Agent::server(&server, 7401);

    // The member's own connection, made before flowtop starts: --once finds
    // its process in /proc with the member's rights.
    let mut own = as_user(
        &client,
        MEMBER,
        "/usr/bin/python3",
        &[
            "-c",
            "import socket,sys,time\ns=socket.create_connection(('192.0.2.2',7401))\nprint(s.getsockname()[1],flush=True)\ntime.sleep(60)",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("the member's client starts");
    let mut first = String::new();
    BufReader::new(own.stdout.as_mut().expect("piped"))
        .read_line(&mut first)
        .expect("its port");
    let own_port: u16 = first.trim().parse().expect("a port");
    let own_pid = child_of(own.id()).expect("the client under runuser");

    let once = run(&mut as_user(
        &client,
        MEMBER,
        BIN,
        &["--once", "--json", "-4T", "-n", "-G"],
    ));
    let stderr = String::from_utf8_lossy(&once.stderr);
    assert!(once.status.success(), "--once as a member: {stderr}");
    let flow = String::from_utf8_lossy(&once.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| has_tuple(v, "tcp", CLIENT_V4, own_port, SERVER_V4, 7401))
        .unwrap_or_else(|| {
            panic!(
                "no flow of the member's connection: {}",
                String::from_utf8_lossy(&once.stdout)
            )
        });
    assert_eq!(ju64(&flow, "pid"), Some(u64::from(own_pid)), "{flow}");
    assert_eq!(
        jstr(&flow, "exe").map(|e| e.contains("python3")),
        Some(true),
        "{flow}"
    );
    let _ = own.kill();
    let _ = own.wait();

    // --json: eBPF loads with the file capabilities; a connection of
    // another user (root's agent) made while it runs gets its process and
    // executable (CAP_SYS_PTRACE: /proc/PID/exe of another user).
    let mut stream = as_user(&client, MEMBER, BIN, &["--json", "-4T", "-n", "-G", "-t", "0.5"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("flowtop --json as a member");
    let lines = stream_lines(&mut stream);
    let meta = wait_line(&lines, WAIT, |v| event(v) == "meta");
    let mut root_client = Agent::client(&client);
    let (_idx, port) = root_client.tcp_connect(SERVER_V4, 7401);
    let pid = u64::from(root_client.pid());
    let seen = wait_line(&lines, WAIT, |v| {
        has_tuple(v, "tcp", CLIENT_V4, port, SERVER_V4, 7401)
            && ju64(v, "pid") == Some(pid)
            && jstr(v, "exe").is_some()
    });
    // SIGINT to flowtop itself (runuser does not pass it on).
    let flowtop_pid = child_of(stream.id()).expect("runuser's child");
    send_signal(flowtop_pid, libc::SIGINT);
    let status = wait_timeout(&mut stream, WAIT);
    let mut err = String::new();
    if let Some(mut e) = stream.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut err);
    }
    let meta = meta.unwrap_or_else(|| panic!("no meta line from --json as a member: {err}"));
    assert_eq!(
        meta["ebpf"]["available"],
        Value::Bool(true),
        "eBPF with file capabilities: {meta}"
    );
    assert!(seen.is_some(), "no flow with root's process and exe: {err}");
    assert!(
        status.is_some_and(|s| s.success()),
        "--json exit: {status:?} {err}"
    );

    // Outside the group: not even executable.
    let out = run(&mut as_user(&client, OUTSIDER, BIN, &["--version"]));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(pkg);
}

#[test]
#[ignore = "needs root: installs the Debian package, adds a user"]
fn a_member_gets_only_their_own_rights_on_paths_they_name() {
    if !require_root() {
        return;
    }
    let mut pkg = Installed::new();
    pkg.user(MEMBER, true);
    let ns = Netns::with_conntrack();
    // Root-only places, each with content that must never show.
    let secret = "ftpkg-secret-4b1d";
    let root_dir = PathBuf::from(format!("/root/ftpkg-{}", std::process::id()));
    std::fs::create_dir_all(&root_dir).expect("mkdir");
    std::fs::set_permissions(&root_dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    for f in ["tcp.conf", "GeoLite2-City.mmdb", "journal.sqlite"] {
        std::fs::write(root_dir.join(f), format!("1, {secret}\n")).expect("write");
    }
    let shadow_before = std::fs::read("/etc/shadow").expect("/etc/shadow");
    // A root-owned directory the member may read but not write, and a
    // conf dir of the member's own with a mirror (never contacted).
    let rootowned = PathBuf::from(format!("/var/tmp/ftpkg-rootowned-{}", std::process::id()));
    std::fs::create_dir_all(&rootowned).expect("mkdir");
    std::fs::set_permissions(&rootowned, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let conf = PathBuf::from(format!("/var/tmp/ftpkg-conf-{}", std::process::id()));
    std::fs::create_dir_all(&conf).expect("mkdir");
    std::fs::write(conf.join("geoip.conf"), "http://192.0.2.99/\n").expect("write");
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o755)).expect("chmod");

    let root_s = root_dir.display().to_string();
    let journal = root_dir.join("journal.sqlite").display().to_string();
    let conf_s = conf.display().to_string();
    let rootowned_s = rootowned.display().to_string();
    let cases: Vec<(&str, Vec<&str>, &str)> = vec![
        (
            "--conf-dir /root",
            vec!["--once", "-n", "-G", "--conf-dir", "/root"],
            "Permission denied",
        ),
        (
            "--conf-dir at a root-only dir",
            vec!["--once", "-n", "-G", "--conf-dir", &root_s],
            "Permission denied",
        ),
        (
            "--journal /etc/shadow (history)",
            vec!["history", "--journal", "/etc/shadow"],
            "/etc/shadow",
        ),
        (
            "--journal /etc/shadow (record)",
            vec!["record", "--no-sysctl", "--journal", "/etc/shadow"],
            "/etc/shadow",
        ),
        (
            "--journal in a root-only dir",
            vec!["history", "--journal", &journal],
            "journal.sqlite",
        ),
        (
            "--geoip-dir at a root-only dir",
            vec!["--once", "-n", "--geoip-dir", &root_s],
            "Permission denied",
        ),
        (
            "-u into a root-owned dir",
            vec!["-u", "--conf-dir", &conf_s, "--geoip-dir", &rootowned_s],
            "Permission denied",
        ),
    ];
    // The same with a wider set given by hand (file-permission bypassing
    // capabilities on top of the package's): flowtop removes them first
    // thing (privileges::confine_file_access), so nothing changes.
    let wider = "cap_net_admin,cap_bpf,cap_perfmon,cap_sys_ptrace,cap_dac_read_search,cap_dac_override=ep";
    for caps in ["", wider] {
        if !caps.is_empty() {
            ok(Command::new("setcap").args([caps, BIN]));
        }
        for (what, args, says) in &cases {
            let out = run(&mut as_user(&ns, MEMBER, BIN, args));
            let (stdout, stderr) = (
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
            );
            assert!(
                !out.status.success(),
                "{what} ({caps:?}): accepted\n{stdout}\n{stderr}"
            );
            assert!(
                stderr.contains(says),
                "{what} ({caps:?}): unclear error: {stderr}"
            );
            // Neither the planted secret nor any line of /etc/shadow.
            let shadow = String::from_utf8_lossy(&shadow_before);
            let lines = shadow.lines().filter(|l| l.len() > 8);
            for leaked in std::iter::once(secret).chain(lines) {
                assert!(
                    !stdout.contains(leaked) && !stderr.contains(leaked),
                    "{what} ({caps:?}): leaked {leaked:?}\n{stdout}\n{stderr}"
                );
            }
        }
    }
    assert_eq!(
        std::fs::read("/etc/shadow").expect("/etc/shadow"),
        shadow_before,
        "/etc/shadow unchanged"
    );
    let mut left: Vec<_> = std::fs::read_dir(&root_dir)
        .expect("ls")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["GeoLite2-City.mmdb", "journal.sqlite", "tcp.conf"],
        "nothing written in the root-only dir"
    );
    assert_eq!(
        std::fs::read_dir(&rootowned).expect("ls").count(),
        0,
        "nothing written by -u"
    );
    let _ = std::fs::remove_dir_all(&root_dir);
    let _ = std::fs::remove_dir_all(&rootowned);
    let _ = std::fs::remove_dir_all(&conf);
    drop(pkg);
}

#[test]
#[ignore = "needs root: installs the Debian package, adds a user, network namespaces"]
fn a_member_records_to_a_journal_under_their_xdg_state_home() {
    if !require_root() {
        return;
    }
    let mut pkg = Installed::new();
    pkg.user(MEMBER, true);
    let (client, server) = Netns::pair();
    let _far = Agent::server(&server, 7402);
    let mut rec = as_user(&client, MEMBER, BIN, &["record", "-4T", "-n", "-G", "-t", "0.5"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("flowtop record as a member");
    std::thread::sleep(Duration::from_secs(2));
    let mut cl = Agent::client(&client);
    let (idx, port) = cl.tcp_connect(SERVER_V4, 7402);
    cl.tcp_send(idx, 1000);
    let journal = PathBuf::from(format!("/home/{MEMBER}/.local/state/flowtop/journal.sqlite"));
    // SIGTERM ends the recording: live flows get a last checkpoint.
    std::thread::sleep(Duration::from_secs(2));
    if let Some(pid) = child_of(rec.id()) {
        send_signal(pid, libc::SIGTERM);
    }
    let status = wait_timeout(&mut rec, WAIT);
    let mut err = String::new();
    if let Some(mut e) = rec.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut err);
    }
    assert!(
        status.is_some_and(|s| s.success()),
        "record's exit: {status:?} {err}"
    );
    let out = run(&mut as_user(
        &client,
        MEMBER,
        BIN,
        &["history", "--json", "--port", "7402"],
    ));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "history as the member: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!(":{port}")),
        "the flow is not in the member's journal: {text} {err}"
    );
    let uid: u32 = ok(Command::new("id").args(["-u", MEMBER]))
        .trim()
        .parse()
        .expect("uid");
    let m = std::fs::metadata(&journal).expect("the journal under ~/.local/state/flowtop");
    assert_eq!(m.uid(), uid, "the journal belongs to the member");
    assert!(
        !Path::new("/var/lib/flowtop/journal.sqlite").exists(),
        "root's journal untouched"
    );
    drop(pkg);
}
