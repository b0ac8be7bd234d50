//! The executable and lineage of short-lived processes, recorded by the
//! eBPF exec/fork programs when they start (issue 12, item 3): the
//! processes below are gone before flowtop reads their socket events, so
//! /proc can tell nothing about them.

use super::*;

/// A directory of copies of the python binary, removed on drop.
struct Copies(std::path::PathBuf);

impl Drop for Copies {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
#[ignore = "needs root and network namespaces: run by `cargo xtask test` as root"]
fn ebpf_owners_of_short_lived_processes_carry_exe_cmdline_and_parent() {
    if !require_root() {
        return;
    }
    let (client, server) = Netns::pair();
    let _srv = Agent::server(&server, 7020);
    // -t 30: no /proc scan runs while the processes below live.
    let mut ft = Flowtop::start(&client, &["--json", "-t", "30", "-4T", "--attribution", "ebpf"]);
    let meta = ft.lines.first().cloned().expect("meta line");
    let programs = meta["ebpf"]["programs"].to_string();
    assert!(
        programs.contains("raw_tp/sched_process_exec") && programs.contains("raw_tp/sched_process_fork"),
        "the exec/fork programs are not attached: {meta}\nstderr: {}",
        ft.stderr()
    );

    // Each process runs from its own copy of the interpreter, under a name
    // of its own: its `exe` can only come from its exec record.
    let python = std::fs::canonicalize(python()).expect("python path");
    let dir = std::env::temp_dir().join(format!("flowtop-exec-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("copy dir");
    let copies = Copies(dir);
    let me = std::process::id();
    let my_comm = std::fs::read_to_string("/proc/self/comm").expect("comm");
    let my_comm = my_comm.trim_end_matches('\n');
    // Short, so that the marker argument after it fits in the 256 bytes of
    // arguments recorded.
    let script = format!(
        "import socket;s=socket.create_connection(('{SERVER_V4}',7020));s.sendall(b'x');print(s.getsockname()[1])"
    );
    let mut expected = Vec::new();
    for i in 0..20 {
        let exe = copies.0.join(format!("ft-exec-{i}"));
        std::fs::copy(&python, &exe).expect("copy python");
        let exe = exe.to_str().expect("utf-8 path").to_owned();
        let marker = format!("ft-arg-{i}");
        let (pid, sport) = run_printing_port(client.netns_exec(&exe, &["-c", &script, &marker]), &exe);
        expected.push((pid, sport, exe, marker));
    }

    let find = |ft: &Flowtop, pid: u32, sport: u16| -> Option<Value> {
        ft.lines
            .iter()
            .find(|v| {
                has_tuple(v, "tcp", CLIENT_V4, sport, SERVER_V4, 7020)
                    && ju64(v, "pid") == Some(u64::from(pid))
            })
            .cloned()
    };
    let end = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        ft.pump();
        let all = expected
            .iter()
            .all(|(pid, sport, ..)| find(&ft, *pid, *sport).is_some());
        if all || std::time::Instant::now() > end {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for (pid, sport, exe, marker) in &expected {
        let v = find(&ft, *pid, *sport).unwrap_or_else(|| {
            ft.fail(&format!(
                "the flow of {exe} (pid {pid}, port {sport}) was not attributed"
            ))
        });
        assert_eq!(jstr(&v, "attribution"), Some("ebpf"), "{v}");
        assert_eq!(jstr(&v, "exe"), Some(exe.as_str()), "{v}");
        let cmdline = jstr(&v, "cmdline").unwrap_or_else(|| panic!("no cmdline: {v}"));
        assert!(
            cmdline.starts_with(&format!("{exe} -c import socket;"))
                && cmdline.ends_with(&format!(" {marker}")),
            "{v}"
        );
        assert_eq!(ju64(&v, "ppid"), Some(u64::from(me)), "{v}");
        assert_eq!(jstr(&v, "parent_comm"), Some(my_comm), "{v}");
        // Present in every line, a digest or null while it is computed.
        let sha = v
            .get("exe_sha256")
            .unwrap_or_else(|| panic!("no exe_sha256: {v}"));
        assert!(
            sha.is_null() || sha.as_str().is_some_and(|s| s.len() == 64),
            "{v}"
        );
    }
}

/// A child that forks and does not exec runs its parent's program: its
/// flow names the child, with the parent's executable and arguments, and
/// the parent as its parent (from the fork record).
#[test]
#[ignore = "needs root and network namespaces: run by `cargo xtask test` as root"]
fn a_forked_child_without_exec_inherits_its_parents_program() {
    if !require_root() {
        return;
    }
    let (client, server) = Netns::pair();
    let _srv = Agent::server(&server, 7021);
    let mut ft = Flowtop::start(&client, &["--json", "-t", "30", "-4T", "--attribution", "ebpf"]);
    let python = std::fs::canonicalize(python()).expect("python path");
    let dir = std::env::temp_dir().join(format!("flowtop-fork-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("copy dir");
    let copies = Copies(dir);
    let exe = copies.0.join("ft-fork-parent");
    std::fs::copy(&python, &exe).expect("copy python");
    let exe = exe.to_str().expect("utf-8 path").to_owned();
    // Short, so that the marker argument fits in the 256 bytes recorded.
    let script = format!(
        "import os,socket as S\nif os.fork()==0:\n s=S.create_connection(('{SERVER_V4}',7021));s.sendall(b'x');print(os.getpid(),s.getsockname()[1],flush=True);os._exit(0)\nos.wait()"
    );
    let child = client
        .netns_exec(&exe, &["-c", &script, "ft-fork-marker"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the copy starts");
    let parent = child.id();
    let out = child.wait_with_output().expect("the copy runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8_lossy(&out.stdout);
    let mut words = printed.split_whitespace();
    let (pid, sport): (u32, u16) = (
        words.next().and_then(|w| w.parse().ok()).expect("child pid"),
        words.next().and_then(|w| w.parse().ok()).expect("child port"),
    );
    let v = ft.wait_for("the forked child's flow", Duration::from_secs(30), |v| {
        has_tuple(v, "tcp", CLIENT_V4, sport, SERVER_V4, 7021) && ju64(v, "pid").is_some()
    });
    assert_eq!(ju64(&v, "pid"), Some(u64::from(pid)), "{v}");
    assert_eq!(jstr(&v, "exe"), Some(exe.as_str()), "{v}");
    assert!(
        jstr(&v, "cmdline").is_some_and(|c| c.starts_with(&exe) && c.ends_with(" ft-fork-marker")),
        "{v}"
    );
    assert_eq!(ju64(&v, "ppid"), Some(u64::from(parent)), "{v}");
    assert_eq!(jstr(&v, "parent_comm"), Some("ft-fork-parent"), "{v}");
}
