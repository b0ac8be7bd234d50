//! The screen end to end, as root: flowtop in a tmux pane inside a network
//! namespace with real traffic, driven by keys, read with capture-pane.
//!
//! `cargo test -p flowtop --test screen -- --ignored --test-threads=1`

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use flowtop_testkit::harness::*;

/// A private tmux server with one pane running a command.
struct Tmux {
    socket: String,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl Tmux {
    /// Runs `command` (a shell line) in a `width` x `height` pane.
    fn start(command: &str, width: u16, height: u16) -> Tmux {
        let socket = format!(
            "flowtop-screen-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let t = Tmux { socket };
        t.run(&[
            "new-session",
            "-d",
            "-s",
            "ft",
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
            command,
        ]);
        t
    }

    fn run(&self, args: &[&str]) -> String {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket, "-f", "/dev/null"]).args(args);
        check_output(c)
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "ft"])
    }

    /// Sends keys as tmux names them ("q", "Enter", "Escape", "C-c", "Tab").
    fn keys(&self, keys: &[&str]) {
        for k in keys {
            self.run(&["send-keys", "-t", "ft", k]);
        }
    }

    /// Types text literally.
    fn type_text(&self, text: &str) {
        self.run(&["send-keys", "-t", "ft", "-l", text]);
    }

    fn pane_pid(&self) -> u32 {
        self.run(&["display-message", "-p", "-t", "ft", "#{pane_pid}"])
            .trim()
            .parse()
            .expect("pane pid")
    }

    fn alternate_on(&self) -> bool {
        self.run(&["display-message", "-p", "-t", "ft", "#{alternate_on}"])
            .trim()
            == "1"
    }

    /// Waits until the pane shows something `pred` accepts; panics with the
    /// screen otherwise.
    fn wait_for(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        poll_until(WAIT, Duration::from_millis(100), || {
            let s = self.screen();
            pred(&s).then_some(s)
        })
        .unwrap_or_else(|| panic!("the screen never showed {what}:\n{}", self.screen()))
    }

    fn wait_text(&self, text: &str) -> String {
        self.wait_for(&format!("{text:?}"), |s| s.contains(text))
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

/// The pids whose parent is `pid`.
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for d in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(p) = d.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        // The parent is the second field after the parenthesised comm.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(p);
        }
    }
    out
}

/// The line of the screen that contains `text`.
fn line_with<'a>(screen: &'a str, text: &str) -> Option<(usize, &'a str)> {
    screen.lines().enumerate().find(|(_, l)| l.contains(text))
}

/// The shell line: flowtop, then its exit status and the terminal modes
/// once it is gone.
fn pane_command(ns: &Netns, args: &str) -> String {
    pane_command_in(ns, args, "C.UTF-8")
}

/// The same in a locale (`LC_ALL`): the screen draws blocks and lines
/// only in a UTF-8 one, plain ASCII otherwise.
fn pane_command_in(ns: &Netns, args: &str, locale: &str) -> String {
    format!(
        "LC_ALL={locale} ip netns exec {} {} {args}; echo FLOWTOP-EXIT=$?; stty -a | tr ' ' '\\n' | grep -x -e -icanon -e icanon -e echo -e -echo | tr '\\n' ' '; echo; sleep 600",
        ns.name,
        flowtop_bin()
    )
}

/// Both sysctls off before flowtop starts, so turning them on and back off
/// is visible.
fn sysctls_off(ns: &Netns) -> (String, String) {
    ns.set_acct_ts("0", "0");
    ns.acct_ts()
}

/// After flowtop left: canonical mode and echo are back, the alternate
/// screen is gone, the sysctls are as before.
fn assert_restored(t: &Tmux, ns: &Netns, before: &(String, String)) {
    let s = t.wait_text("FLOWTOP-EXIT=");
    let modes = t.wait_for("the terminal modes", |s| s.contains("icanon"));
    assert!(s.contains("FLOWTOP-EXIT=0"), "flowtop failed:\n{s}");
    let modes_line = line_with(&modes, "icanon").map(|(_, l)| l).unwrap_or_default();
    assert!(
        modes_line.split_whitespace().any(|w| w == "icanon")
            && modes_line.split_whitespace().any(|w| w == "echo"),
        "raw mode left on: {modes_line:?}\n{modes}"
    );
    assert!(!t.alternate_on(), "still on the alternate screen:\n{modes}");
    assert_eq!(&ns.acct_ts(), before, "sysctls not restored");
}

#[test]
#[ignore = "needs root, network namespaces and tmux: run by `cargo xtask test` as root"]
fn screen_shows_flows_and_obeys_its_keys() {
    if !require_root() {
        return;
    }
    if !require_tool("tmux") {
        return;
    }
    let (client, server) = Netns::pair();
    let before = sysctls_off(&client);
    let _srv = Agent::server(&server, 7101);
    let mut cl = Agent::client(&client);
    let (idx, _port) = cl.tcp_connect(SERVER_V4, 7101);
    cl.tcp_send(idx, 100_000);
    // Flows with tuples the test chooses (a UDP one, hidden until U).
    client.conntrack("-I -s 203.0.113.9 -d 198.51.100.9 -p tcp --sport 1000 --dport 80 --state ESTABLISHED -t 300 -u ASSURED");
    client.conntrack("-I -s 203.0.113.9 -d 198.51.100.10 -p udp --sport 1000 --dport 53 -t 300");

    // A zone without a file: times on screen are local, per TZ.
    let t = Tmux::start(&format!("TZ=XST-5:30 {}", pane_command(&client, "")), 160, 40);
    let s = t.wait_for("both TCP flows", |s| {
        s.contains("198.51.100.9") && s.contains(SERVER_V4)
    });
    assert!(
        s.contains("flowtop ") && s.contains("Flows") && s.contains("PROCESS"),
        "{s}"
    );
    assert!(
        s.contains(" │ in ") && s.contains("B/s out "),
        "the header total:\n{s}"
    );
    assert!(!s.contains("198.51.100.10"), "UDP shows before U:\n{s}");
    assert_eq!(
        client.acct_ts(),
        ("1".to_owned(), "1".to_owned()),
        "sysctls on while running"
    );
    // The agent's connection is attributed to it (python3).
    let s = t.wait_for("the agent's process", |s| {
        line_with(s, SERVER_V4).is_some_and(|(_, l)| l.contains("python3") && l.contains("7101"))
    });
    assert!(
        line_with(&s, "198.51.100.9").is_some_and(|(_, l)| l.contains("80/http")),
        "{s}"
    );

    // U shows UDP live.
    t.keys(&["U"]);
    t.wait_for("the UDP flow after U", |s| {
        line_with(s, "198.51.100.10").is_some_and(|(_, l)| l.contains("udp") && l.contains("53/domain"))
    });

    // Sort by PORT (Bytes -> Geo -> Port), ascending: 53 above 80 above 7101.
    t.keys(&["<", "<"]);
    let s = t.wait_text("sort PORT▲");
    let row = |s: &str, text: &str| line_with(s, text).map(|(i, _)| i).unwrap_or(usize::MAX);
    assert!(
        row(&s, "53/domain") < row(&s, "80/http") && row(&s, "80/http") < row(&s, "7101"),
        "port order:\n{s}"
    );
    t.keys(&["r"]);
    let s = t.wait_text("sort PORT▼");
    assert!(
        row(&s, "7101") < row(&s, "80/http") && row(&s, "80/http") < row(&s, "53/domain"),
        "{s}"
    );

    // Filter, then Esc clears it.
    t.keys(&["/"]);
    t.type_text("port:80");
    t.keys(&["Enter"]);
    let s = t.wait_for("only the port 80 flow", |s| {
        s.contains("filter: port:80") && s.contains("198.51.100.9") && !s.contains("7101")
    });
    assert!(!s.contains("198.51.100.10"), "{s}");
    // Details of the one flow.
    t.keys(&["Enter"]);
    let s = t.wait_text("Flow details");
    assert!(
        s.contains("203.0.113.9:1000 → 198.51.100.9:80 (http)") && s.contains("ASSURED"),
        "{s}"
    );
    t.keys(&["Escape"]);
    t.wait_for("the table again", |s| {
        !s.contains("Flow details") && s.contains("PROCESS")
    });
    t.keys(&["Escape"]);
    t.wait_for("every flow after Esc", |s| {
        !s.contains("filter:") && s.contains("7101")
    });
    // Ctrl-U erases the line being typed, as readline does.
    t.keys(&["/"]);
    t.type_text("port:80");
    t.wait_text("filter: port:80");
    t.keys(&["C-u"]);
    t.wait_for("the filter erased", |s| {
        !s.contains("filter:") && s.contains("7101")
    });
    t.keys(&["Enter"]);
    // A flow begun while flowtop runs has a start time: in local time.
    let (_, lport) = cl.tcp_connect(SERVER_V4, 7101);
    t.keys(&["/"]);
    t.type_text(&format!("port:{lport}"));
    t.keys(&["Enter"]);
    t.wait_for("the new flow alone", |s| {
        s.contains(&format!("filter: port:{lport}")) && s.contains("7101")
    });
    t.keys(&["Enter"]);
    // Its first events carry no start time: the next reading does.
    t.wait_for("the start in local time", |s| {
        line_with(s, "started").is_some_and(|(_, l)| l.contains(" XST (age "))
    });
    // One Escape at a time: two in one write can reach the terminal
    // reader as one sequence (ESC ESC), which is not two Esc keys.
    t.keys(&["Escape"]);
    t.wait_for("the details closed", |s| line_with(s, "started").is_none());
    t.keys(&["Escape"]);
    t.wait_for("every flow again", |s| {
        !s.contains("filter:") && s.contains("7101")
    });

    // Tabs: Processes (the agent, with its executable), Countries, Flows.
    t.keys(&["Tab"]);
    let s = t.wait_text("EXECUTABLE");
    assert!(s.contains("python3") && s.contains("(unattributed)"), "{s}");
    assert!(s.contains("per program") && s.contains("PIDS"), "{s}");
    // g: a row per pid, with its command line (the agent's script).
    t.keys(&["g"]);
    let s = t.wait_text("COMMAND");
    assert!(s.contains("per pid"), "{s}");
    assert!(
        line_with(&s, "python3 -c").is_some_and(|(_, l)| l.starts_with("python3 ")),
        "the agent's command line:\n{s}"
    );
    // g again: a row per container or unit (a process with neither keeps
    // its program row), then back to a row per program.
    t.keys(&["g"]);
    let s = t.wait_text("per container/unit");
    assert!(s.contains("python3"), "{s}");
    t.keys(&["g"]);
    t.wait_text("per program");
    t.keys(&["Tab"]);
    t.wait_text("COUNTRY");
    // History: the journal of `flowtop record` (none here: one line says so).
    t.keys(&["Tab"]);
    t.wait_for("the History tab", |s| {
        s.contains("DURATION") && s.contains("journal")
    });
    t.keys(&["Tab"]);
    t.wait_for("the Flows tab", |s| {
        s.contains("ADDRESS") && !s.contains("DURATION")
    });

    // Help, closed by any key.
    t.keys(&["?"]);
    t.wait_text("Keys (any key closes)");
    t.keys(&["x"]);
    t.wait_for("the help closed", |s| !s.contains("Keys (any key closes)"));

    t.keys(&["q"]);
    assert_restored(&t, &client, &before);
}

#[test]
#[ignore = "needs root, network namespaces and tmux: run by `cargo xtask test` as root"]
fn ctrl_c_and_sigterm_end_the_screen_with_everything_restored() {
    if !require_root() {
        return;
    }
    if !require_tool("tmux") {
        return;
    }
    let ns = Netns::with_conntrack();
    ns.conntrack("-I -s 203.0.113.9 -d 198.51.100.9 -p tcp --sport 1000 --dport 80 --state ESTABLISHED -t 300 -u ASSURED");
    let before = sysctls_off(&ns);

    // Ctrl-C arrives as a key in raw mode.
    let t = Tmux::start(&pane_command(&ns, "-t 0.5"), 120, 30);
    t.wait_text("198.51.100.9");
    t.keys(&["C-c"]);
    assert_restored(&t, &ns, &before);
    drop(t);

    // SIGTERM ends the run through the normal path too.
    let t = Tmux::start(&pane_command(&ns, ""), 120, 30);
    t.wait_text("198.51.100.9");
    let shell = t.pane_pid();
    let flowtop = poll_until(WAIT, Duration::from_millis(50), || {
        children(shell).first().copied()
    })
    .expect("flowtop runs under the pane's shell");
    // The screen runs with the same reduced privileges as the stream: every
    // thread keeps CAP_DAC_READ_SEARCH, CAP_NET_ADMIN, CAP_SYS_PTRACE only.
    let kept: u64 = (1 << 2) | (1 << 12) | (1 << 19);
    for task in std::fs::read_dir(format!("/proc/{flowtop}/task"))
        .expect("task dir")
        .flatten()
    {
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        let field = |k: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .map(|v| u64::from_str_radix(v.trim(), 16).expect("hex caps"))
        };
        assert_eq!(
            field("CapEff:"),
            Some(kept),
            "thread {:?}:\n{status}",
            task.path()
        );
        assert_eq!(field("CapBnd:"), Some(kept), "thread {:?}", task.path());
    }
    send_signal(flowtop, libc::SIGTERM);
    assert_restored(&t, &ns, &before);
}

#[test]
#[ignore = "needs root, network namespaces and tmux: run by `cargo xtask test` as root"]
fn a_small_terminal_gets_a_message_and_a_resize_brings_the_table() {
    if !require_root() {
        return;
    }
    if !require_tool("tmux") {
        return;
    }
    let ns = Netns::with_conntrack();
    ns.conntrack("-I -s 203.0.113.9 -d 198.51.100.9 -p tcp --sport 1000 --dport 80 --state ESTABLISHED -t 300 -u ASSURED");
    let before = sysctls_off(&ns);
    let t = Tmux::start(&pane_command(&ns, ""), 30, 6);
    t.wait_text("too small");
    t.run(&["resize-window", "-t", "ft", "-x", "100", "-y", "20"]);
    t.wait_text("198.51.100.9");
    t.keys(&["q"]);
    assert_restored(&t, &ns, &before);
}

#[test]
#[ignore = "needs root, network namespaces and tmux: run by `cargo xtask test` as root"]
fn closing_the_terminal_ends_flowtop_and_restores_the_sysctls() {
    if !require_root() {
        return;
    }
    if !require_tool("tmux") {
        return;
    }
    // flowtop 0.6.8 survives its terminal and spins; this one gets SIGHUP
    // and leaves through the normal path.
    let ns = Netns::with_conntrack();
    ns.conntrack("-I -s 203.0.113.9 -d 198.51.100.9 -p tcp --sport 1000 --dport 80 --state ESTABLISHED -t 300 -u ASSURED");
    let before = sysctls_off(&ns);
    let t = Tmux::start(&pane_command(&ns, ""), 100, 20);
    t.wait_text("198.51.100.9");
    let shell = t.pane_pid();
    let flowtop = poll_until(WAIT, Duration::from_millis(50), || {
        children(shell).first().copied()
    })
    .expect("flowtop runs under the pane's shell");
    assert_eq!(ns.acct_ts(), ("1".to_owned(), "1".to_owned()));
    drop(t); // kills the tmux server: the pane's terminal closes
    let gone = poll_until(WAIT, Duration::from_millis(50), || {
        (!std::path::Path::new(&format!("/proc/{flowtop}")).exists()).then_some(())
    });
    assert!(
        gone.is_some(),
        "flowtop {flowtop} still runs after its terminal closed"
    );
    assert_eq!(ns.acct_ts(), before, "sysctls not restored");
}

/// The TREND cell of the Processes row that contains `row_text`: the
/// columns under the TREND title, up to the EXECUTABLE one.
fn trend_cell(screen: &str, row_text: &str) -> Option<String> {
    let (_, head) = line_with(screen, "TREND")?;
    let head: Vec<char> = head.chars().collect();
    let at = |word: &str| {
        let w: Vec<char> = word.chars().collect();
        head.windows(w.len()).position(|x| x == w.as_slice())
    };
    let (from, to) = (at("TREND")?, at("EXECUTABLE")?);
    let (_, row) = line_with(screen, row_text)?;
    Some(row.chars().skip(from).take(to - from).collect())
}

/// The bursts a sparkline shows: runs of samples at half its height or
/// more, each after quiet ones (at most an eighth). `levels` lists its
/// characters from empty to full.
fn bursts(cell: &str, levels: &[char]) -> usize {
    let level = |c: char| levels.iter().position(|l| *l == c);
    let mut runs = 0;
    let mut quiet = false;
    // The first column is the direction mark.
    for c in cell.chars().skip(1) {
        match level(c) {
            Some(l) if l >= levels.len() / 2 => {
                if quiet {
                    runs += 1;
                }
                quiet = false;
            }
            Some(l) if l <= 1 => quiet = true,
            _ => {}
        }
    }
    runs
}

/// A program that sends in bursts, three seconds apart: its row of the
/// Processes tab shows each burst in the TREND sparkline, in blocks in a
/// UTF-8 locale and in ASCII in the C locale, with the header's graph.
#[test]
#[ignore = "needs root, network namespaces and tmux: run by `cargo xtask test` as root"]
fn the_processes_trend_shows_a_programs_bursts() {
    if !require_root() {
        return;
    }
    if !require_tool("tmux") {
        return;
    }
    let (client, server) = Netns::pair();
    let before = sysctls_off(&client);
    let _srv = Agent::server(&server, 7102);
    for (locale, levels, mark) in [
        ("C.UTF-8", &[' ', '▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'][..], '↑'),
        ("C", &[' ', '.', ',', ':', '-', '=', '+', '*', '#'][..], '^'),
    ] {
        let t = Tmux::start(&pane_command_in(&client, "", locale), 200, 16);
        t.wait_text("PROCESS");
        // Connected once flowtop runs: its counters are on from the start.
        let mut cl = Agent::client(&client);
        let (idx, _) = cl.tcp_connect(SERVER_V4, 7102);
        t.keys(&["Tab"]);
        t.wait_for("the agent on the Processes tab", |s| {
            s.contains("TREND") && line_with(s, "python3").is_some()
        });
        for _ in 0..3 {
            std::thread::sleep(Duration::from_secs(3));
            cl.tcp_send(idx, 4_000_000);
        }
        let s = t.wait_for("three bursts in the agent's sparkline", |s| {
            trend_cell(s, "python3").is_some_and(|c| bursts(&c, levels) >= 3)
        });
        let cell = trend_cell(&s, "python3").expect("the TREND cell");
        assert!(cell.starts_with(mark), "sent more than received: {cell:?}\n{s}");
        if locale == "C" {
            assert!(s.is_ascii(), "plain ASCII in the C locale:\n{s}");
            assert!(s.contains(" | in "), "{s}");
        } else {
            assert!(s.contains(" │ in "), "{s}");
        }
        cl.tcp_close(idx);
        t.keys(&["q"]);
        assert_restored(&t, &client, &before);
    }
}
