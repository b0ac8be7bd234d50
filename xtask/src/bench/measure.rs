//! Process sampling: CPU from /proc/PID/stat, VmRSS/VmHWM from
//! /proc/PID/status, wall/CPU/peak RSS of a run to completion from wait4,
//! and the statistics the reports show.

use std::fs::{self, File};
use std::io;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::guards::{check_interrupted, sleep_checked, INTERRUPTED};

pub(crate) fn pid_alive(pid: i32) -> bool {
    // A zombie still has /proc/PID, but its state is Z.
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !matches!(stat_fields(&s).first(), Some(&"Z") | Some(&"X")),
        Err(_) => false,
    }
}

/// The fields of /proc/PID/stat after the command name: [0] is the state
/// (field 3), so field k (1-based, as in proc(5)) is at index k - 3.
fn stat_fields(stat: &str) -> Vec<&str> {
    match stat.rfind(')') {
        Some(i) => stat[i + 1..].split_whitespace().collect(),
        None => Vec::new(),
    }
}

/// (utime, stime) of a process, in clock ticks.
pub(crate) fn cpu_ticks(pid: i32) -> Result<(u64, u64)> {
    let s =
        fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("process {pid} is gone"))?;
    let f = stat_fields(&s);
    let get = |k: usize| -> Result<u64> { Ok(f.get(k - 3).context("short /proc/PID/stat")?.parse()?) };
    Ok((get(14)?, get(15)?))
}

/// (busy, total) jiffies of the whole machine, from /proc/stat.
fn machine_ticks() -> (u64, u64) {
    let s = fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> = s
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum(); // guest time is already in user
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total.saturating_sub(idle), total)
}

/// (VmHWM, VmRSS) in KiB.
pub(crate) fn mem_kib(pid: i32) -> Result<(u64, u64)> {
    let s = fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("process {pid} is gone"))?;
    let field = |name: &str| -> Result<u64> {
        let line = s
            .lines()
            .find(|l| l.starts_with(name))
            .with_context(|| format!("no {name} for {pid}"))?;
        Ok(line[name.len()..].trim().trim_end_matches("kB").trim().parse()?)
    };
    Ok((field("VmHWM:")?, field("VmRSS:")?))
}

pub(crate) fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

pub(crate) fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

// ---------------------------------------------------------------- measuring

#[derive(Debug, Clone, Copy)]
pub(crate) struct RunStat {
    pub(crate) wall_s: f64,
    pub(crate) cpu_s: f64,
    pub(crate) user_s: f64,
    pub(crate) sys_s: f64,
    pub(crate) maxrss_kib: u64,
}

/// Runs `cmd` to completion with stdout to /dev/null; wall time, CPU time and
/// peak RSS from wait4.
pub(crate) fn timed_run(cmd: &mut Command, stderr_path: &Path, timeout: Duration) -> Result<RunStat> {
    check_interrupted()?;
    cmd.stdin(Stdio::null())
        .stdout(File::create("/dev/null")?)
        .stderr(
            File::create(stderr_path).with_context(|| format!("cannot create {}", stderr_path.display()))?,
        );
    let t0 = Instant::now();
    let child = cmd.spawn().with_context(|| format!("cannot start {cmd:?}"))?;
    let pid = child.id() as libc::pid_t;
    drop(child); // reaped below with wait4; std's Child does nothing on drop
    let mut status: libc::c_int = 0;
    // SAFETY: zeroed rusage is a valid value to be overwritten.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let wall = loop {
        // SAFETY: wait4 on our own child with valid out-pointers.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut ru) };
        if r == pid {
            break t0.elapsed();
        }
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                bail!("wait4: {e}");
            }
        }
        let interrupted = INTERRUPTED.load(Ordering::SeqCst);
        if interrupted || t0.elapsed() > timeout {
            // SAFETY: our own unreaped child; then reap it.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                while libc::wait4(pid, &mut status, 0, &mut ru) < 0
                    && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
                {}
            }
            if interrupted {
                bail!("interrupted");
            }
            bail!("{cmd:?} took longer than {timeout:?}; killed");
        }
        thread::sleep(Duration::from_micros(200));
    };
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        let err = fs::read_to_string(stderr_path).unwrap_or_default();
        bail!("{cmd:?} failed (wait status {status:#x}): {}", err.trim());
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok(RunStat {
        wall_s: wall.as_secs_f64(),
        cpu_s: tv(ru.ru_utime) + tv(ru.ru_stime),
        user_s: tv(ru.ru_utime),
        sys_s: tv(ru.ru_stime),
        maxrss_kib: ru.ru_maxrss as u64,
    })
}

/// Measures CPU (% of one core) and memory of `pid` over `secs`.
pub(crate) fn measure_window(
    pid: i32,
    secs: f64,
    alive: &mut dyn FnMut() -> Option<String>,
) -> Result<Window> {
    let tck = clk_tck();
    let c0 = cpu_ticks(pid)?;
    let m0 = machine_ticks();
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs_f64(secs);
    while Instant::now() < end {
        sleep_checked((end - Instant::now()).min(Duration::from_millis(250)))?;
        if let Some(st) = alive() {
            bail!("process {pid} exited during the measurement ({st})");
        }
    }
    let c1 = cpu_ticks(pid)?;
    let m1 = machine_ticks();
    let window = t0.elapsed().as_secs_f64();
    let (hwm_kib, rss_kib) = mem_kib(pid)?;
    let pct = |ticks: u64| ticks as f64 / tck / window * 100.0;
    Ok(Window {
        cpu_pct: pct(c1.0 + c1.1 - c0.0 - c0.1),
        user_pct: pct(c1.0 - c0.0),
        sys_pct: pct(c1.1 - c0.1),
        other_pct: (pct(m1.0 - m0.0) - pct(c1.0 + c1.1 - c0.0 - c0.1)).max(0.0),
        window_s: window,
        hwm_kib,
        rss_kib,
    })
}

/// CPU and memory of a process over a window.
pub(crate) struct Window {
    pub(crate) cpu_pct: f64,
    pub(crate) user_pct: f64,
    pub(crate) sys_pct: f64,
    /// CPU the rest of the machine used during the window (% of one core).
    pub(crate) other_pct: f64,
    pub(crate) window_s: f64,
    pub(crate) hwm_kib: u64,
    pub(crate) rss_kib: u64,
}

/// CPU ticks (user + system) of the threads of `pid` named `name`.
pub(crate) fn thread_ticks(pid: i32, name: &str) -> u64 {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    let mut total = 0;
    for t in tasks.flatten() {
        let comm = fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if comm.trim_end() != name {
            continue;
        }
        let stat = fs::read_to_string(t.path().join("stat")).unwrap_or_default();
        // Fields after the ")" that ends the name: utime and stime are the
        // 12th and 13th.
        let after = stat.rsplit_once(')').map_or("", |(_, a)| a);
        let f: Vec<&str> = after.split_whitespace().collect();
        let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        total += get(11) + get(12);
    }
    total
}

pub(crate) fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let i = ((p / 100.0) * (s.len() - 1) as f64).round() as usize;
    s[i.min(s.len() - 1)]
}
