//! `flowtop record`: the journal of ended flows, read back with rusqlite
//! (the history command is tested with its own code): rows of curl and of
//! a UDP exchange, a recorder killed with SIGKILL, a full and a read-only
//! file system.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flowtop_testkit::names::{self as fx, Scratch};
use rusqlite::{Connection, OpenFlags};

use super::*;

const HTTP_PORT: u16 = 8080;
const UDP_PORT: u16 = 5353;

/// Sends one datagram, waits for the echo, prints its local port.
const UDP_CLIENT_PY: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
s.sendto(b"ping journal", (sys.argv[1], int(sys.argv[2])))
s.recvfrom(2048)
print(s.getsockname()[1], flush=True)
"#;

/// A `flowtop record` running in a namespace; killed on drop.
struct Recorder {
    child: Child,
    stderr: Arc<Mutex<String>>,
    stdout: Arc<Mutex<String>>,
    journal: PathBuf,
}

fn collect_into(mut r: impl std::io::Read + Send + 'static) -> Arc<Mutex<String>> {
    let out = Arc::new(Mutex::new(String::new()));
    let o = out.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = r.read(&mut buf) {
            if n == 0 {
                break;
            }
            o.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    out
}

impl Recorder {
    fn start(ns: &Netns, journal: &Path, extra: &[&str]) -> Recorder {
        let j = journal.to_str().expect("a UTF-8 path");
        let mut args = vec!["record", "--journal", j, "-46TU", "-n", "-G", "-t", "1"];
        args.extend(extra);
        let mut cmd = ns.netns_exec(flowtop_bin(), &args);
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("flowtop record starts");
        let stdout = collect_into(child.stdout.take().expect("piped"));
        let stderr = collect_into(child.stderr.take().expect("piped"));
        Recorder {
            child,
            stderr,
            stdout,
            journal: journal.to_path_buf(),
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn assert_running(&mut self, what: &str) {
        if let Ok(Some(st)) = self.child.try_wait() {
            panic!("{what}: flowtop record exited ({st}); stderr:\n{}", self.stderr());
        }
    }

    /// Waits until the recorder records: a conntrack entry inserted and
    /// deleted until its row is in the journal.
    fn wait_ready(&mut self, ns: &Netns) {
        let until = Instant::now() + WAIT * 2;
        for n in 0u16.. {
            self.assert_running("starting");
            assert!(
                Instant::now() < until,
                "no sentinel row; stderr:\n{}",
                self.stderr()
            );
            let sport = 1000 + n;
            ns.conntrack(&format!(
                "-I -s 203.0.113.77 -d 198.51.100.77 -p tcp --sport {sport} --dport 7 --state ESTABLISHED -t 300"
            ));
            std::thread::sleep(Duration::from_millis(300));
            ns.conntrack(&format!("-D -p tcp -s 203.0.113.77 --sport {sport}"));
            let found = poll_until(Duration::from_secs(3), Duration::from_millis(100), || {
                (rows(&self.journal, "WHERE sport = ?1", sport) > 0).then_some(())
            });
            if found.is_some() {
                return;
            }
        }
    }

    /// SIGTERM; must exit 0 with nothing on stdout.
    fn stop(mut self) -> String {
        send_signal(self.pid(), libc::SIGTERM);
        let st = wait_timeout(&mut self.child, Duration::from_secs(15))
            .unwrap_or_else(|| panic!("no exit after SIGTERM; stderr:\n{}", self.stderr()));
        std::thread::sleep(Duration::from_millis(100));
        let stderr = self.stderr();
        assert!(st.success(), "SIGTERM: exit {st}; stderr:\n{stderr}");
        let stdout = self.stdout.lock().unwrap().clone();
        assert!(stdout.is_empty(), "record printed on stdout: {stdout:?}");
        stderr
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The journal, opened read-only (a reader never writes).
fn reader(journal: &Path) -> Option<Connection> {
    let db = Connection::open_with_flags(journal, OpenFlags::SQLITE_OPEN_READ_ONLY).ok()?;
    db.busy_timeout(Duration::from_secs(2)).ok()?;
    Some(db)
}

/// Rows of `flow` matching `cond` (with ?1 = `arg`); 0 when unreadable.
fn rows(journal: &Path, cond: &str, arg: impl rusqlite::ToSql) -> i64 {
    reader(journal)
        .and_then(|db| {
            db.query_row(&format!("SELECT count(*) FROM flow {cond}"), [arg], |r| r.get(0))
                .ok()
        })
        .unwrap_or(0)
}

/// One flow row as the test checks it.
#[derive(Debug)]
struct Row {
    proto: i64,
    src: Vec<u8>,
    dst: Vec<u8>,
    sport: i64,
    dport: i64,
    end_ms: Option<i64>,
    start_ms: i64,
    orig_bytes: Option<i64>,
    reply_bytes: Option<i64>,
    exe: Option<String>,
    comm: Option<String>,
    pid: Option<i64>,
    direction: Option<String>,
    reply_src: Option<i64>,
}

fn row_of(journal: &Path, proto: i64, sport: u16) -> Option<Row> {
    let db = reader(journal)?;
    db.query_row(
        "SELECT f.proto, s.ip, d.ip, f.sport, f.dport, f.end_ms, f.start_ms, f.orig_bytes, f.reply_bytes, \
         e.path, p.comm, p.pid, f.direction, f.reply_src \
         FROM flow f JOIN addr s ON s.id = f.src JOIN addr d ON d.id = f.dst \
         LEFT JOIN process p ON p.id = f.process LEFT JOIN exe e ON e.id = f.exe \
         WHERE f.proto = ?1 AND f.sport = ?2 AND f.end_ms IS NOT NULL",
        rusqlite::params![proto, sport],
        |r| {
            Ok(Row {
                proto: r.get(0)?,
                src: r.get(1)?,
                dst: r.get(2)?,
                sport: r.get(3)?,
                dport: r.get(4)?,
                end_ms: r.get(5)?,
                start_ms: r.get(6)?,
                orig_bytes: r.get(7)?,
                reply_bytes: r.get(8)?,
                exe: r.get(9)?,
                comm: r.get(10)?,
                pid: r.get(11)?,
                direction: r.get(12)?,
                reply_src: r.get(13)?,
            })
        },
    )
    .ok()
}

fn wait_row(rec: &mut Recorder, proto: i64, sport: u16) -> Row {
    let journal = rec.journal.clone();
    poll_until(WAIT, Duration::from_millis(100), || {
        row_of(&journal, proto, sport)
    })
    .unwrap_or_else(|| {
        rec.assert_running("waiting for a row");
        panic!(
            "no row for proto {proto} sport {sport}; stderr:\n{}",
            rec.stderr()
        )
    })
}

fn tools_present() -> bool {
    require_root() && require_tool("conntrack") && require_tool("curl")
}

#[test]
#[ignore = "needs root and network namespaces: run by `cargo xtask test` as root"]
fn record_writes_ended_tcp_and_udp_flows_with_their_programs() {
    if !tools_present() {
        return;
    }
    let (client, server) = Netns::pair();
    let tmp = Scratch::new("ft-journal").expect("scratch");
    let journal = tmp.path().join("state/journal.sqlite");
    let _servers = http_and_udp_echo(&server, HTTP_PORT, UDP_PORT);

    let mut rec = Recorder::start(&client, &journal, &[]);
    rec.wait_ready(&client);

    let pid = std::process::id();
    let name = format!("ftj-curl-{pid}");
    // The kernel's comm holds 15 bytes.
    let comm = &name[..name.len().min(15)];
    let curl = fx::program_copy(tmp.path(), "/usr/bin/curl", &name).expect("curl copy");
    let curl = std::fs::canonicalize(curl).expect("the copy");
    let url = format!("http://{SERVER_V4}:{HTTP_PORT}/");
    let mut curls = Vec::new();
    for _ in 0..2 {
        let out = client.run(
            curl.to_str().unwrap(),
            &["-s", "-o", "/dev/null", "-w", "%{local_port}", &url],
        );
        curls.push(out.trim().parse::<u16>().expect("curl printed its port"));
    }
    let py = fx::program_copy(tmp.path(), python(), &format!("ftj-udp-{pid}")).expect("python copy");
    let py = std::fs::canonicalize(py).expect("the copy");
    let out = client.run(
        py.to_str().unwrap(),
        &["-c", UDP_CLIENT_PY, SERVER_V4, &UDP_PORT.to_string()],
    );
    let udp_port: u16 = out.trim().parse().expect("the UDP client printed its port");

    // DESTROY at once rather than after the protocols' timeouts.
    client.conntrack(&format!("-D -p tcp -d {SERVER_V4} --dport {HTTP_PORT}"));
    client.conntrack(&format!("-D -p udp -d {SERVER_V4} --dport {UDP_PORT}"));

    let v4 = |s: &str| s.parse::<std::net::Ipv4Addr>().unwrap().octets().to_vec();
    let mut problems = Vec::new();
    for port in &curls {
        let r = wait_row(&mut rec, 6, *port);
        let ok = r.proto == 6
            && r.src == v4(CLIENT_V4)
            && r.dst == v4(SERVER_V4)
            && r.sport == i64::from(*port)
            && r.dport == i64::from(HTTP_PORT)
            && r.exe.as_deref() == curl.to_str()
            && r.comm.as_deref() == Some(comm)
            && r.pid.is_some()
            && r.direction.as_deref() == Some("out")
            && r.reply_src.is_none()
            && r.orig_bytes.unwrap_or(0) > 0
            && r.reply_bytes.unwrap_or(0) > 0
            && r.end_ms.is_some_and(|e| e >= r.start_ms);
        if !ok {
            problems.push(format!("curl port {port}: {r:?}"));
        }
    }
    let r = wait_row(&mut rec, 17, udp_port);
    if !(r.dst == v4(SERVER_V4) && r.dport == i64::from(UDP_PORT) && r.exe.as_deref() == py.to_str()) {
        problems.push(format!("udp port {udp_port}: {r:?}"));
    }
    {
        let db = reader(&journal).expect("the journal opens");
        let exes: i64 = db
            .query_row(
                "SELECT count(*) FROM exe WHERE path = ?1",
                [curl.to_str().unwrap()],
                |r| r.get(0),
            )
            .unwrap();
        if exes != 1 {
            problems.push(format!("curl's exe stored {exes} times"));
        }
    }
    let stderr = rec.stop();
    assert!(problems.is_empty(), "{}\nstderr:\n{stderr}", problems.join("\n"));
}

#[test]
#[ignore = "needs root and network namespaces: run by `cargo xtask test` as root"]
fn a_recorder_killed_with_sigkill_keeps_what_ended_before_and_the_journal_opens() {
    if !tools_present() {
        return;
    }
    let ns = Netns::with_conntrack();
    let tmp = Scratch::new("ft-journal-kill").expect("scratch");
    let journal = tmp.path().join("journal.sqlite");
    let mut rec = Recorder::start(&ns, &journal, &[]);
    rec.wait_ready(&ns);
    for sport in 20_000..20_030u16 {
        ns.conntrack(&format!(
            "-I -s 192.0.2.50 -d 198.51.100.50 -p udp --sport {sport} --dport 53 -t 300"
        ));
    }
    ns.conntrack("-D -p udp -s 192.0.2.50");
    // Ended two seconds and more before the kill: written.
    std::thread::sleep(Duration::from_millis(2500));
    send_signal(rec.pid(), libc::SIGKILL);
    let _ = wait_timeout(&mut rec.child, WAIT);
    let db = reader(&journal).expect("the journal opens after SIGKILL");
    let ok: String = db.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(ok, "ok");
    let n: i64 = db
        .query_row(
            "SELECT count(*) FROM flow f JOIN addr s ON s.id = f.src \
             WHERE s.ip = x'c0000232' AND f.proto = 17 AND f.end_ms IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 30, "rows of the 30 flows that ended before the kill");
}

/// A tmpfs of `size` mounted on `dir`, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0755"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("mount");
        assert!(st.success(), "mount tmpfs on {}", dir.display());
        Tmpfs(dir.to_path_buf())
    }

    fn remount_ro(&self) {
        let st = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(&self.0)
            .status()
            .expect("mount");
        assert!(st.success(), "remount {} read-only", self.0.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system holding `dir` (a file of zeros until ENOSPC).
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let p = dir.join("filler");
    let mut f = std::fs::File::create(&p).expect("the filler");
    let block = vec![0u8; 4096];
    while f.write_all(&block).is_ok() {}
    let _ = f.sync_all();
    p
}

fn udp_flows(ns: &Netns, src: &str, ports: std::ops::Range<u16>) {
    for sport in ports {
        ns.conntrack(&format!(
            "-I -s {src} -d 198.51.100.60 -p udp --sport {sport} --dport 53 -t 300"
        ));
    }
    ns.conntrack(&format!("-D -p udp -s {src}"));
}

#[test]
#[ignore = "needs root and network namespaces: run by `cargo xtask test` as root"]
fn a_full_or_read_only_file_system_is_a_warning_and_recording_goes_on() {
    if !tools_present() {
        return;
    }
    let ns = Netns::with_conntrack();
    let tmp = Scratch::new("ft-journal-fs").expect("scratch");

    // Full: the flows that end while it is full are lost with a warning;
    // once there is room again they are written again.
    let fs = Tmpfs::mount(&tmp.path().join("full"), "256k");
    let journal = fs.0.join("journal.sqlite");
    let mut rec = Recorder::start(&ns, &journal, &[]);
    rec.wait_ready(&ns);
    let filler = fill(&fs.0);
    udp_flows(&ns, "192.0.2.61", 30_000..30_050);
    // The whole warning line (the path itself has "full" in it, and
    // stderr may be read in the middle of a line).
    let warned = poll_until(WAIT, Duration::from_millis(100), || {
        let e = rec.stderr();
        e.contains("recording goes on").then_some(e)
    });
    rec.assert_running("with the file system full");
    let warned = warned.unwrap_or_else(|| panic!("no warning about a full disk; stderr:\n{}", rec.stderr()));
    assert!(warned.contains("disk is full"), "{warned}");
    std::fs::remove_file(filler).unwrap();
    udp_flows(&ns, "192.0.2.62", 30_100..30_110);
    wait_row(&mut rec, 17, 30_109);
    rec.stop();
    drop(fs);

    // Read-only: made and closed by a first recorder, then the file system
    // goes read-only under the next one.
    let fs = Tmpfs::mount(&tmp.path().join("ro"), "4m");
    let journal = fs.0.join("journal.sqlite");
    drop(flowtop::journal::writer::open(&journal).expect("a fresh journal"));
    fs.remount_ro();
    let mut rec = Recorder::start(&ns, &journal, &[]);
    let warned = poll_until(WAIT, Duration::from_millis(100), || {
        let e = rec.stderr();
        e.contains("read-only").then_some(e)
    });
    let warned = warned.unwrap_or_else(|| panic!("no read-only warning; stderr:\n{}", rec.stderr()));
    // Flows end: each batch fails with a warning, the recorder goes on.
    std::thread::sleep(Duration::from_secs(3));
    udp_flows(&ns, "192.0.2.63", 30_200..30_210);
    let failed = poll_until(WAIT, Duration::from_millis(100), || {
        let e = rec.stderr();
        e.contains("could not write").then_some(e)
    });
    rec.assert_running("on a read-only file system");
    assert!(
        failed.is_some(),
        "no warning about failed writes; stderr:\n{warned}"
    );
    rec.stop();
}
