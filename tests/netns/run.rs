//! `flowtop run -- CMD`: the manifest of a shell script whose children make
//! a TCP and a UDP exchange, while another program talks to the same server
//! at the same time (it must not appear); the exit status passes through;
//! `--diff` marks new and gone destinations.
//!
//! flowtop enters the client namespace with `setns` ([`Netns::cmd`]), not
//! `ip netns exec`, which remounts /sys and hides the cgroup2 mount.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use flowtop_testkit::names::{self as fx, Proc, Scratch};

use super::*;

const HTTP_PORT: u16 = 8080;
const UDP_PORT: u16 = 5353;
/// Nothing listens there: the datagram still makes a conntrack entry.
const OTHER_UDP_PORT: u16 = 5354;

/// Sends one datagram to argv[1]:argv[2]; waits for an echo when argv[3]
/// is "echo".
const UDP_CLIENT_PY: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
s.sendto(b"ping run", (sys.argv[1], int(sys.argv[2])))
if sys.argv[3] == "echo":
    s.recvfrom(2048)
"#;

/// Outside the run: HTTP requests and UDP exchanges with the same server
/// every 100 ms until killed; prints "going" after the first round.
const OUTSIDER_PY: &str = r#"
import socket, sys, time, urllib.request
first = True
while True:
    urllib.request.urlopen("http://%s:%s/" % (sys.argv[1], sys.argv[2]), timeout=5).read()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(5)
    s.sendto(b"outsider", (sys.argv[1], int(sys.argv[3])))
    s.recvfrom(2048)
    s.close()
    if first:
        print("going", flush=True)
        first = False
    time.sleep(0.1)
"#;

struct Fixture {
    client: Netns,
    _server: Netns,
    _servers: Proc,
    tmp: Scratch,
    curl: String,
    curl_comm: String,
    udp: String,
    udp_comm: String,
}

/// The kernel's comm holds 15 bytes.
fn comm_of(name: &str) -> String {
    name[..name.len().min(15)].to_owned()
}

fn fixture() -> Option<Fixture> {
    if !(require_root() && require_tool("conntrack") && require_tool("curl")) {
        return None;
    }
    if !Path::new("/proc/self/mounts").exists()
        || !std::fs::read_to_string("/proc/self/mounts")
            .unwrap_or_default()
            .contains(" cgroup2 ")
    {
        skip("no cgroup2 mount");
        return None;
    }
    let (client, server) = Netns::pair();
    let tmp = Scratch::new("ft-run").expect("scratch");
    let servers = http_and_udp_echo(&server, HTTP_PORT, UDP_PORT);
    std::fs::write(tmp.path().join("udp_client.py"), UDP_CLIENT_PY).expect("the UDP client");
    let pid = std::process::id();
    let copy = |src: &str, name: &str| {
        let p = fx::program_copy(tmp.path(), src, name).expect("a program copy");
        std::fs::canonicalize(p)
            .expect("the copy")
            .to_string_lossy()
            .into_owned()
    };
    let curl_name = format!("ftr-curl-{pid}");
    let udp_name = format!("ftr-udp-{pid}");
    Some(Fixture {
        curl: copy("/usr/bin/curl", &curl_name),
        curl_comm: comm_of(&curl_name),
        udp: copy(python(), &udp_name),
        udp_comm: comm_of(&udp_name),
        client,
        _server: server,
        _servers: servers,
        tmp,
    })
}

impl Fixture {
    /// `flowtop run ARGS -- sh -c SCRIPT` in the client namespace; its
    /// exit status and stderr.
    fn run(&self, args: &[&str], script: &str) -> (i32, String) {
        let (code, _, stderr) = self.run_env(args, script, &[]);
        (code, stderr)
    }

    /// [`Fixture::run`] with environment variables set; also its stdout.
    fn run_env(&self, args: &[&str], script: &str, env: &[(&str, &str)]) -> (i32, String, String) {
        let mut cmd = self.client.cmd(flowtop_bin());
        cmd.arg("run")
            .args(["-n", "-G", "-t", "1"])
            .args(args)
            .args(["--", "sh", "-c", script])
            .env_remove("SUDO_UID")
            .env_remove("SUDO_GID")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("flowtop run starts");
        let st = wait_timeout(&mut child, Duration::from_secs(60)).expect("flowtop run ends");
        let out = child.wait_with_output().expect("its output");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        (st.code().unwrap_or(-1), stdout, stderr)
    }

    /// The script: a TCP exchange (curl, asking for `run.example` in its
    /// Host header) and a UDP datagram to `udp_port`, in background
    /// children of the shell.
    fn script(&self, udp_port: u16, echo: bool) -> String {
        format!(
            "{curl} -s -o /dev/null -H 'Host: run.example' http://{SERVER_V4}:{HTTP_PORT}/ & \
             {udp} {py} {SERVER_V4} {udp_port} {echo} & wait",
            curl = self.curl,
            udp = self.udp,
            py = self.tmp.path().join("udp_client.py").display(),
            echo = if echo { "echo" } else { "no" },
        )
    }

    fn outsider(&self) -> Proc {
        let name = format!("ftr-out-{}", std::process::id());
        let py = fx::program_copy(self.tmp.path(), python(), &name).expect("a python copy");
        let mut cmd = self.client.cmd(py.to_str().expect("utf-8"));
        cmd.args(["-c", OUTSIDER_PY, SERVER_V4])
            .args([HTTP_PORT, UDP_PORT].map(|p| p.to_string()));
        let mut p = Proc::spawn(cmd).expect("the outsider");
        assert_eq!(p.line(WAIT).expect("the outsider talks"), "going");
        p
    }
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).expect("the manifest is written");
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// (dst, dport, proto) -> the destination.
fn by_destination(m: &Value) -> BTreeMap<(String, u64, String), Value> {
    m["destinations"]
        .as_array()
        .expect("destinations")
        .iter()
        .map(|d| {
            (
                (
                    d["dst"].as_str().expect("dst").to_owned(),
                    d["dport"].as_u64().expect("dport"),
                    d["proto"].as_str().expect("proto").to_owned(),
                ),
                d.clone(),
            )
        })
        .collect()
}

fn comms(d: &Value) -> Vec<String> {
    d["comms"]
        .as_array()
        .expect("comms")
        .iter()
        .map(|c| c.as_str().expect("a comm").to_owned())
        .collect()
}

#[test]
#[ignore = "needs root and network namespaces: run by `cargo xtask test` as root"]
fn run_records_exactly_its_process_trees_destinations() {
    let Some(fx) = fixture() else {
        return;
    };
    let _outsider = fx.outsider();
    let manifest = fx.tmp.path().join("manifest.json");
    let (code, stderr) = fx.run(
        &["--json", "--manifest", manifest.to_str().unwrap()],
        &fx.script(UDP_PORT, true),
    );
    assert_eq!(code, 0, "stderr:\n{stderr}");
    let m = read_json(&manifest);
    for k in ["command", "exit_code", "start", "end", "destinations"] {
        assert!(m.get(k).is_some(), "{k} missing: {m}");
    }
    assert_eq!(m["exit_code"], 0, "{m}");
    assert_eq!(m["command"][0], "sh", "{m}");
    let dests = by_destination(&m);
    let tcp = (SERVER_V4.to_owned(), u64::from(HTTP_PORT), "tcp".to_owned());
    let udp = (SERVER_V4.to_owned(), u64::from(UDP_PORT), "udp".to_owned());
    assert_eq!(
        dests.keys().cloned().collect::<Vec<_>>(),
        vec![udp.clone(), tcp.clone()],
        "exactly the script's destinations: {m}\nstderr:\n{stderr}"
    );
    let t = &dests[&tcp];
    assert_eq!(comms(t), vec![fx.curl_comm.clone()], "{m}");
    assert_eq!(t["flows"], 1, "one curl, not the outsider's requests: {m}");
    assert!(t["orig_bytes"].as_u64().unwrap_or(0) > 0, "{m}");
    assert!(t["reply_bytes"].as_u64().unwrap_or(0) > 0, "{m}");
    assert_eq!(t["dst_name"], "run.example", "the name curl asked for: {m}");
    assert_eq!(t["pids"].as_array().map(Vec::len), Some(1), "{m}");
    let u = &dests[&udp];
    assert_eq!(comms(u), vec![fx.udp_comm.clone()], "{m}");
    assert_eq!(u["flows"], 1, "{m}");
    for k in ["country", "dst_name"] {
        assert!(u.get(k).is_some(), "{k} missing: {u}");
    }
    let cgroups: Vec<String> = std::fs::read_dir("/sys/fs/cgroup/unified")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("flowtop-run-"))
                .collect()
        })
        .unwrap_or_default();
    assert!(cgroups.is_empty(), "cgroups left behind: {cgroups:?}");

    // --diff: the UDP exchange moves to another port.
    let second = fx.tmp.path().join("second.json");
    let (code, stderr) = fx.run(
        &[
            "--json",
            "--manifest",
            second.to_str().unwrap(),
            "--diff",
            manifest.to_str().unwrap(),
        ],
        &fx.script(OTHER_UDP_PORT, false),
    );
    assert_eq!(code, 0, "stderr:\n{stderr}");
    let m2 = read_json(&second);
    let changes: BTreeMap<(String, u64, String), String> = by_destination(&m2)
        .into_iter()
        .map(|(k, d)| (k, d["change"].as_str().unwrap_or("").to_owned()))
        .collect();
    let other = (SERVER_V4.to_owned(), u64::from(OTHER_UDP_PORT), "udp".to_owned());
    let want: BTreeMap<_, _> = [
        (tcp, "same".to_owned()),
        (udp, "gone".to_owned()),
        (other, "new".to_owned()),
    ]
    .into_iter()
    .collect();
    assert_eq!(changes, want, "{m2}\nstderr:\n{stderr}");

    // The text manifest on stderr marks them too.
    let (code, stderr) = fx.run(
        &["--diff", manifest.to_str().unwrap()],
        &fx.script(OTHER_UDP_PORT, false),
    );
    assert_eq!(code, 0, "stderr:\n{stderr}");
    let marked = |sign: &str, port: u16| {
        stderr.lines().any(|l| {
            l.starts_with(&format!("{sign} {SERVER_V4} "))
                && l.split_whitespace().any(|w| w == port.to_string())
        })
    };
    assert!(marked("+", OTHER_UDP_PORT) && marked("-", UDP_PORT), "{stderr}");
}

#[test]
#[ignore = "needs root and network namespaces: run by `cargo xtask test` as root"]
fn run_passes_the_exit_status_through() {
    let Some(fx) = fixture() else {
        return;
    };
    let (code, stderr) = fx.run(&[], "exit 3");
    assert_eq!(code, 3, "stderr:\n{stderr}");
    assert!(stderr.contains("exit code 3"), "{stderr}");
    let (code, stderr) = fx.run(&["--json"], "kill -TERM $$");
    assert_eq!(code, 128 + libc::SIGTERM, "stderr:\n{stderr}");
    let last = stderr.lines().last().unwrap_or("");
    let m: Value = serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    assert_eq!(m["exit_code"], 128 + libc::SIGTERM, "{m}");
    assert_eq!(m["destinations"], json!([]), "{m}");
}

#[test]
#[ignore = "needs root and network namespaces: run by `cargo xtask test` as root"]
fn run_starts_cmd_as_the_invoking_user_with_its_output_untouched() {
    let Some(fx) = fixture() else {
        return;
    };
    let ids = "id -u; id -g; echo to-stderr >&2";
    // sudo's variables.
    let (code, stdout, stderr) = fx.run_env(&[], ids, &[("SUDO_UID", "65534"), ("SUDO_GID", "65533")]);
    assert_eq!(code, 0, "stderr:\n{stderr}");
    assert_eq!(
        stdout, "65534\n65533\n",
        "CMD's stdout, and only it: stderr:\n{stderr}"
    );
    assert!(stderr.lines().any(|l| l == "to-stderr"), "{stderr}");
    // --user wins over them; a bare uid without a passwd entry keeps it as gid.
    let (code, stdout, stderr) = fx.run_env(&["--user", "54321"], ids, &[("SUDO_UID", "65534")]);
    assert_eq!(code, 0, "stderr:\n{stderr}");
    assert_eq!(stdout, "54321\n54321\n", "stderr:\n{stderr}");
    // Neither: flowtop's own user.
    let (code, stdout, stderr) = fx.run_env(&[], "id -u", &[]);
    assert_eq!((code, stdout.as_str()), (0, "0\n"), "stderr:\n{stderr}");
    // An unknown user is a usage error before anything runs.
    let (code, stdout, stderr) = fx.run_env(&["--user", "no-such-user-ftr"], "echo ran", &[]);
    assert_eq!((code, stdout.as_str()), (2, ""), "stderr:\n{stderr}");
}
