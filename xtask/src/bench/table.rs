//! A namespace with a filled conntrack table, and what every size of `bench
//! dump` and `bench report` measures on it first: the one-shot dumps of
//! `conntrack -L` and `flowtop --once --json`, side by side.

use std::fs;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::guards::SysctlGuard;
use super::log;
use super::measure::{timed_run, RunStat};
use super::netns::Netns;
use super::run_cmd;
use super::stream::once_snapshot_lines;

/// The packet filler: one UDP socket sending a byte to N distinct
/// destination ports and hosts (198.51.100.2-254): N entries.
pub(crate) const FILL_PY: &str = r#"
import socket, sys, time
n = int(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("198.51.100.1", 0))
sent = errs = 0
t0 = time.monotonic()
for host in range(2, 255):
    dst = "198.51.100.%d" % host
    for port in range(1, 65536):
        if sent >= n:
            break
        for attempt in range(100):
            try:
                s.sendto(b"x", (dst, port))
                break
            except OSError:
                errs += 1
                time.sleep(0.001)
        sent += 1
    if sent >= n:
        break
print(sent, errs, "%.3f" % (time.monotonic() - t0))
"#;

/// The ctnetlink filler: entries made by IPCTNL_MSG_CT_NEW, no packet sent.
pub(crate) const CT_INSERT_PY: &str = include_str!("../../scripts/ct_insert.py");
/// Creates and deletes entries at a rate over ctnetlink; imports ct_insert.py.
pub(crate) const CT_CHURN_PY: &str = include_str!("../../scripts/ct_churn.py");

/// A private namespace with an interface for the fill, an nft rule that makes
/// conntrack track the output, UDP timeouts of an hour and accounting on.
pub(crate) fn setup_namespace(ns: &Netns) -> Result<&'static str> {
    let ip = |args: &[&str]| run_cmd(ns.cmd("ip").args(args)).map(|_| ());
    ip(&["link", "set", "lo", "up"])?;
    // A dummy interface if the kernel has the driver; otherwise a veth pair
    // whose peer stays down (packets are dropped by the qdisc after conntrack
    // confirmed them), ARP off so that nothing waits on neighbour resolution.
    let kind = if ip(&["link", "add", "ftb0", "type", "dummy"]).is_ok() {
        "dummy"
    } else {
        ip(&["link", "add", "ftb0", "type", "veth", "peer", "name", "ftb1"])?;
        "veth (peer down)"
    };
    ip(&["link", "set", "ftb0", "arp", "off", "up"])?;
    ip(&["addr", "add", "198.51.100.1/24", "dev", "ftb0"])?;
    let nft = |args: &[&str]| run_cmd(ns.cmd("nft").args(args)).map(|_| ());
    nft(&["add", "table", "inet", "ftbench"])?;
    nft(&[
        "add",
        "chain",
        "inet",
        "ftbench",
        "out",
        "{ type filter hook output priority 0; }",
    ])?;
    nft(&[
        "add", "rule", "inet", "ftbench", "out", "ct", "state", "new", "accept",
    ])?;
    ns.sysctl("net.netfilter.nf_conntrack_udp_timeout", "3600")?;
    ns.sysctl("net.netfilter.nf_conntrack_udp_timeout_stream", "3600")?;
    ns.sysctl("net.netfilter.nf_conntrack_acct", "1")?;
    Ok(kind)
}

/// Entries in the namespace's table (`conntrack -C`).
pub(crate) fn conntrack_count(ns: &Netns) -> Result<u64> {
    let out = run_cmd(ns.cmd("conntrack").arg("-C"))?;
    out.trim()
        .parse()
        .with_context(|| format!("conntrack -C printed '{}'", out.trim()))
}

/// How a table gets its N UDP entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fill {
    /// [`FILL_PY`]: real datagrams through the namespace's output hook
    /// (`bench dump`, `bench ui`).
    Packets,
    /// [`CT_INSERT_PY`]: entries inserted over ctnetlink (`bench report`).
    Ctnetlink,
}

/// What one size measured before its benchmark-specific part.
pub(crate) struct ColdStart {
    pub(crate) n: u64,
    pub(crate) fill_s: f64,
    /// `conntrack -C` after the fill.
    pub(crate) counted: u64,
    /// Global sysctls raised for this size (restored afterwards).
    pub(crate) changed: Vec<String>,
    /// One-shot runs on the empty table (only when asked for: the per-flow
    /// peak RSS of `bench dump` subtracts them).
    pub(crate) empty_conntrack: Vec<RunStat>,
    pub(crate) empty_flowtop: Vec<RunStat>,
    pub(crate) conntrack: Vec<RunStat>,
    pub(crate) flowtop: Vec<RunStat>,
    /// Snapshot lines of an untimed `--once --json` pass.
    pub(crate) once_lines: u64,
    /// Entries `conntrack -L` said it showed (its stderr), last run.
    pub(crate) conntrack_shown: Option<u64>,
}

/// One table size: raises the global sysctls, makes the namespace, fills it
/// with `n` entries (`fill`), times `conntrack -L` and `flowtop --once
/// --json -4UnG --no-sysctl` to /dev/null `runs` times each, interleaved,
/// after one untimed pass of each (it checks that flowtop prints every flow
/// and warms the caches for both), then runs `then` on the loaded namespace.
/// The namespace and the sysctls are undone before it returns, on every path.
pub(crate) fn one_size<T>(
    n: u64,
    fill: Fill,
    runs: usize,
    empty_baseline: bool,
    flowtop: &Path,
    tmp: &Path,
    then: impl FnOnce(&Netns, Duration) -> Result<T>,
) -> Result<(ColdStart, T)> {
    let mut sysctls = SysctlGuard::new();
    let changed = sysctls.raise_for_entries(n)?;
    let ns = Netns::create(&format!("ftbench-{}", std::process::id()))?;
    let kind = setup_namespace(&ns)?;
    log(format!("namespace {} ready ({kind} interface)", ns.name));
    let timeout = Duration::from_secs_f64(60.0 + n as f64 / 2_000.0);
    let ft = flowtop.to_string_lossy().into_owned();
    let once = |ns: &Netns| {
        let mut c = ns.cmd(&ft);
        c.args(["--once", "--json", "-4UnG", "--no-sysctl"]);
        c
    };

    let mut empty_conntrack = Vec::new();
    let mut empty_flowtop = Vec::new();
    if empty_baseline {
        for _ in 0..runs {
            empty_conntrack.push(timed_run(
                ns.cmd("conntrack").arg("-L"),
                &tmp.join("ct.err"),
                timeout,
            )?);
            empty_flowtop.push(timed_run(&mut once(&ns), &tmp.join("ft.err"), timeout)?);
        }
    }

    let mut filler = match fill {
        Fill::Packets => {
            log(format!("filling the table with {n} UDP entries (datagrams)"));
            let mut c = ns.cmd("python3");
            c.args(["-c", FILL_PY, &n.to_string()]);
            c
        }
        Fill::Ctnetlink => {
            log(format!("filling the table with {n} UDP entries (ctnetlink)"));
            let script = tmp.join("ct_insert.py");
            fs::write(&script, CT_INSERT_PY)?;
            let mut c = ns.cmd("python3");
            c.arg(&script).arg(n.to_string());
            c
        }
    };
    let filled = timed_run(&mut filler, &tmp.join("fill.err"), timeout)?;
    let counted = conntrack_count(&ns)?;
    log(format!(
        "filled in {:.2} s; conntrack -C = {counted}",
        filled.wall_s
    ));
    if counted < n {
        bail!("only {counted} of {n} entries in the table after the fill");
    }

    let once_lines = once_snapshot_lines(&ns, flowtop, tmp, timeout)?;
    timed_run(ns.cmd("conntrack").arg("-L"), &tmp.join("ct.err"), timeout)?;

    let mut conntrack = Vec::new();
    let mut ours = Vec::new();
    let mut conntrack_shown = None;
    for r in 0..runs {
        log(format!("{n}: one-shot run {}/{runs}", r + 1));
        let errp = tmp.join("ct.err");
        conntrack.push(timed_run(ns.cmd("conntrack").arg("-L"), &errp, timeout)?);
        // "conntrack v1.4.7 (conntrack-tools): 100000 flow entries have been shown."
        conntrack_shown = fs::read_to_string(&errp).ok().and_then(|s| {
            s.split(": ")
                .nth(1)
                .and_then(|t| t.split_whitespace().next().and_then(|x| x.parse().ok()))
        });
        ours.push(timed_run(&mut once(&ns), &tmp.join("ft.err"), timeout)?);
    }
    let rest = then(&ns, timeout)?;
    // Namespace first, then the global sysctls it needed.
    drop(ns);
    drop(sysctls);
    Ok((
        ColdStart {
            n,
            fill_s: filled.wall_s,
            counted,
            changed,
            empty_conntrack,
            empty_flowtop,
            conntrack,
            flowtop: ours,
            once_lines,
            conntrack_shown,
        },
        rest,
    ))
}
