//! A running `flowtop --json` in a namespace: its output counted by a
//! reader thread, and its steady state on a loaded table.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::guards::{sleep_checked, ProcGuard};
use super::measure::{measure_window, Window};
use super::netns::Netns;

/// Runs `flowtop --once --json -4UnG` untimed in `ns` and counts its
/// snapshot lines (checks that every flow is printed; warms caches).
pub(crate) fn once_snapshot_lines(ns: &Netns, flowtop: &Path, tmp: &Path, timeout: Duration) -> Result<u64> {
    let mut check = ns.cmd(&flowtop.to_string_lossy());
    check
        .args(["--once", "--json", "-4UnG", "--no-sysctl"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(File::create(tmp.join("check.err"))?);
    let mut child = check.spawn().context("cannot start flowtop --once")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let (counter, reader) = spawn_counter(stdout);
    let mut g = ProcGuard::new(child, "flowtop --once");
    let t0 = Instant::now();
    while g.exited().is_none() {
        sleep_checked(Duration::from_millis(20))?;
        if t0.elapsed() > timeout {
            bail!("flowtop --once took longer than {timeout:?}");
        }
    }
    drop(g);
    let _ = reader.join();
    Ok(counter.snapshots.load(Ordering::Relaxed))
}

/// Output of a running `flowtop --json`: total bytes and snapshot lines,
/// `update` lines of the active flows of [`ACTIVE_PY`], the last `stats` line.
#[derive(Default)]
pub(crate) struct OutCounter {
    pub(crate) bytes: AtomicU64,
    pub(crate) snapshots: AtomicU64,
    pub(crate) lines: AtomicU64,
    pub(crate) active_updates: AtomicU64,
    pub(crate) stats: Mutex<Option<(u64, String)>>,
}

/// Destination port of the active flows [`ACTIVE_PY`] makes.
const ACTIVE_DPORT: u16 = 9999;

/// N UDP sockets on 127.0.0.1 ports 20000.. each sending a 100-byte datagram
/// to port 9999 twice a second: N conntrack entries whose counters move.
const ACTIVE_PY: &str = r#"
import socket, sys, time
n = int(sys.argv[1])
socks = []
for i in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 20000 + i))
    socks.append(s)
print("ready", flush=True)
while True:
    t = time.time()
    for s in socks:
        s.sendto(b"x" * 100, ("127.0.0.1", 9999))
    time.sleep(max(0.0, 0.5 - (time.time() - t)))
"#;

pub(crate) fn spawn_counter(out: impl Read + Send + 'static) -> (Arc<OutCounter>, thread::JoinHandle<()>) {
    let c = Arc::new(OutCounter::default());
    let c2 = c.clone();
    let h = thread::spawn(move || {
        let mut r = BufReader::with_capacity(1 << 20, out);
        let mut line = Vec::with_capacity(4096);
        loop {
            line.clear();
            match r.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    c2.bytes.fetch_add(n as u64, Ordering::Relaxed);
                    c2.lines.fetch_add(1, Ordering::Relaxed);
                    if line.starts_with(br#"{"event":"snapshot""#) {
                        c2.snapshots.fetch_add(1, Ordering::Relaxed);
                    } else if line.starts_with(br#"{"event":"update""#) {
                        let dport = format!("\"dport\":{ACTIVE_DPORT},");
                        if line.windows(dport.len()).any(|w| w == dport.as_bytes()) {
                            c2.active_updates.fetch_add(1, Ordering::Relaxed);
                        }
                    } else if line.starts_with(br#"{"event":"stats""#) {
                        let mut last = c2.stats.lock().unwrap_or_else(|p| p.into_inner());
                        let seen = last.as_ref().map_or(0, |(k, _)| *k);
                        *last = Some((seen + 1, String::from_utf8_lossy(&line).into_owned()));
                    }
                }
            }
        }
    });
    (c, h)
}

#[derive(Debug, Clone)]
pub(crate) struct Steady {
    pub(crate) other_pct: f64,
    pub(crate) cpu_pct: f64,
    pub(crate) user_pct: f64,
    pub(crate) sys_pct: f64,
    pub(crate) window_s: f64,
    pub(crate) warmup_s: f64,
    pub(crate) hwm_kib: u64,
    pub(crate) rss_kib: u64,
    pub(crate) note: String,
    /// What flowtop's `stats` lines (SIGUSR1 before and after) counted
    /// during the window; None when it printed none (an older flowtop).
    pub(crate) refresh: Option<RefreshCounts>,
    /// Flows made active during the window, and `update` lines about them.
    pub(crate) active: Option<(u64, u64)>,
}

impl Steady {
    /// A steady state from the measured window; the stream adds its
    /// re-read counts and active flows, a screen has neither.
    pub(crate) fn from_window(w: &Window, warmup_s: f64, note: &str) -> Steady {
        Steady {
            cpu_pct: w.cpu_pct,
            user_pct: w.user_pct,
            sys_pct: w.sys_pct,
            other_pct: w.other_pct,
            window_s: w.window_s,
            warmup_s,
            hwm_kib: w.hwm_kib,
            rss_kib: w.rss_kib,
            note: note.trim().to_string(),
            refresh: None,
            active: None,
        }
    }

    /// `update` lines per active flow per second of the window (1.0: every
    /// active flow's rates re-read every interval of 1 s).
    pub(crate) fn updates_per_active_flow_s(&self) -> Option<f64> {
        self.active
            .map(|(flows, updates)| updates as f64 / flows as f64 / self.window_s)
    }
}

/// Full dumps and hot refreshes during a steady-state window.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RefreshCounts {
    pub(crate) dumps: u64,
    pub(crate) refreshes: u64,
    pub(crate) refreshed: u64,
}

/// Asks a running `flowtop --json` for a `stats` line (SIGUSR1) and returns
/// it, or None if none came within 2 s.
fn ask_stats(pid: i32, counter: &OutCounter) -> Option<String> {
    let before = counter.stats.lock().ok()?.as_ref().map_or(0, |(k, _)| *k);
    // SAFETY: kill with a valid signal number.
    unsafe { libc::kill(pid, libc::SIGUSR1) };
    let end = Instant::now() + Duration::from_secs(2);
    while Instant::now() < end {
        if let Some((k, line)) = counter.stats.lock().ok()?.as_ref() {
            if *k > before {
                return Some(line.clone());
            }
        }
        thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Starts `flowtop --json -t 1 -4UnG --no-sysctl` in `ns`, stderr to `errp`;
/// returns it (killed on drop) and its stdout.
pub(crate) fn spawn_flowtop_json(
    ns: &Netns,
    flowtop: &Path,
    errp: &Path,
) -> Result<(ProcGuard, std::process::ChildStdout)> {
    let mut cmd = ns.cmd(&flowtop.to_string_lossy());
    cmd.args(["--json", "-t", "1", "-4UnG", "--no-sysctl"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(File::create(errp)?);
    let mut child = cmd.spawn().context("cannot start flowtop --json")?;
    let stdout = child.stdout.take().context("no stdout")?;
    Ok((ProcGuard::new(child, "flowtop --json"), stdout))
}

/// The steady state of `flowtop --json -t 1` on a table of `n` idle entries,
/// plus `active` flows with traffic made once the table is loaded.
pub(crate) fn steady_flowtop(
    ns: &Netns,
    flowtop: &Path,
    n: u64,
    active: u64,
    secs: f64,
    tmp: &Path,
) -> Result<Steady> {
    let errp = tmp.join("steady-flowtop.err");
    let (mut guard, stdout) = spawn_flowtop_json(ns, flowtop, &errp)?;
    let (counter, reader) = spawn_counter(stdout);
    let pid = guard.pid();
    let t0 = Instant::now();
    let max_wait = Duration::from_secs_f64(20.0 + n as f64 / 20_000.0);
    let mut note = String::new();
    // Wait for the initial dump: the snapshot lines have stopped coming for
    // 3 s (normally all N of them; fewer is noted), up to the deadline.
    let mut last_snap = 0;
    let mut last_change = Instant::now();
    loop {
        sleep_checked(Duration::from_millis(100))?;
        if let Some(st) = guard.exited() {
            let err = fs::read_to_string(&errp).unwrap_or_default();
            bail!("flowtop --json exited early ({st}): {}", err.trim());
        }
        let snaps = counter.snapshots.load(Ordering::Relaxed);
        if snaps != last_snap {
            last_snap = snaps;
            last_change = Instant::now();
        }
        if snaps > 0 && last_change.elapsed() >= Duration::from_secs(3) {
            if snaps != n {
                let _ = write!(
                    note,
                    "initial dump printed {snaps} snapshot lines for {n} flows. "
                );
            }
            break;
        }
        if t0.elapsed() > max_wait {
            let _ = write!(
                note,
                "warm-up cut at {:.0} s: {snaps} of {n} snapshot lines, still growing. ",
                max_wait.as_secs_f64()
            );
            break;
        }
    }
    let warmup_s = t0.elapsed().as_secs_f64();
    let _traffic = if active > 0 {
        let script = tmp.join("active.py");
        fs::write(&script, ACTIVE_PY)?;
        let mut cmd = ns.cmd("python3");
        cmd.arg(&script)
            .arg(active.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd
            .spawn()
            .context("cannot start the traffic of the active flows")?;
        let mut ready = String::new();
        BufReader::new(child.stdout.take().context("no stdout")?).read_line(&mut ready)?;
        let guard = ProcGuard::new(child, "active flows");
        // Let the flows appear and their first rates be measured.
        sleep_checked(Duration::from_secs(3))?;
        Some(guard)
    } else {
        None
    };
    let bytes_before = counter.bytes.load(Ordering::Relaxed);
    let lines_before = counter.lines.load(Ordering::Relaxed);
    let active_before = counter.active_updates.load(Ordering::Relaxed);
    let stats_before = ask_stats(pid, &counter);
    let w = measure_window(pid, secs, &mut || guard.exited())?;
    let stats_after = ask_stats(pid, &counter);
    let active_updates = counter.active_updates.load(Ordering::Relaxed) - active_before;
    let refresh = match (stats_before, stats_after) {
        (Some(a), Some(b)) => {
            let d = |k: &str| {
                field(&b, k)
                    .unwrap_or(0)
                    .saturating_sub(field(&a, k).unwrap_or(0))
            };
            Some(RefreshCounts {
                dumps: d("dumps"),
                refreshes: d("refreshes"),
                refreshed: d("refreshed"),
            })
        }
        _ => None,
    };
    let dbytes = counter.bytes.load(Ordering::Relaxed) - bytes_before;
    let dlines = counter.lines.load(Ordering::Relaxed) - lines_before;
    if dlines > 0 {
        let _ = write!(
            note,
            "printed {dlines} lines ({dbytes} bytes) during the window. "
        );
    }
    drop(guard);
    let _ = reader.join();
    Ok(Steady {
        refresh,
        active: (active > 0).then_some((active, active_updates)),
        ..Steady::from_window(&w, warmup_s, &note)
    })
}

/// A non-negative integer field of a JSON line, by plain text search.
fn field(line: &str, key: &str) -> Option<u64> {
    let at = line.find(&format!("\"{key}\":"))? + key.len() + 3;
    let digits: String = line[at..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}
