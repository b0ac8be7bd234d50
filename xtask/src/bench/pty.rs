//! A screen on a pseudo-terminal of its own: netsniff-ng's flowtop needs a
//! terminal, and so does flowtop's screen when it is measured beside it.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::guards::{sleep_checked, ProcGuard};
use super::measure::{measure_window, mem_kib, pid_alive};
use super::netns::Netns;
use super::stream::Steady;

/// A pseudo-terminal pair: (master, slave), both close-on-exec, with a
/// 200x50 window.
fn open_pty() -> Result<(File, File)> {
    use std::os::fd::FromRawFd;
    let (mut master, mut slave) = (-1, -1);
    let ws = libc::winsize {
        ws_row: 50,
        ws_col: 200,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty with valid out-pointers; the fds it returns are ours.
    unsafe {
        if libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &ws,
        ) != 0
        {
            return Err(io::Error::last_os_error()).context("openpty");
        }
        let (m, s) = (File::from_raw_fd(master), File::from_raw_fd(slave));
        for fd in [master, slave] {
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        }
        Ok((m, s))
    }
}

/// The steady state of a screen (`program args` in `ns`) on a pty of its own
/// (session leader, pty as controlling terminal) whose output a thread
/// drains, measured over `secs` once its RSS stopped growing; it is killed
/// (PDEATHSIG) if this process dies.
pub(crate) fn steady_screen(
    ns: &Netns,
    label: &str,
    program: &str,
    args: &[&str],
    secs: f64,
) -> Result<Steady> {
    let (master, slave) = open_pty()?;
    let mut cmd = ns.cmd(program);
    cmd.args(args)
        .env("TERM", "xterm")
        .env("COLUMNS", "200")
        .env("LINES", "50")
        .stdin(Stdio::from(slave.try_clone()?))
        .stdout(Stdio::from(slave.try_clone()?))
        .stderr(Stdio::from(slave));
    // SAFETY: setsid and ioctl are async-signal-safe; fd 0 is the pty slave by now.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().with_context(|| format!("cannot start {label}"))?;
    drop(cmd); // closes the parent's copies of the slave
    let mut guard = ProcGuard::new(child, label);
    let pid = guard.pid();
    let screen = Arc::new(Mutex::new(Vec::<u8>::new()));
    let screen2 = screen.clone();
    let mut reader = master.try_clone()?;
    // Keeps the last bytes of the screen output, for error messages; ends
    // with EIO once flowtop has exited.
    let drain = thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        while let Ok(k) = reader.read(&mut buf) {
            if k == 0 {
                break;
            }
            if let Ok(mut s) = screen2.lock() {
                s.extend_from_slice(&buf[..k]);
                let len = s.len();
                if len > 8192 {
                    s.drain(..len - 4096);
                }
            }
        }
    });
    let screen_tail = || {
        let s = screen
            .lock()
            .map(|s| String::from_utf8_lossy(&s).into_owned())
            .unwrap_or_default();
        s.chars()
            .filter(|c| !c.is_control() || *c == '\n')
            .collect::<String>()
    };
    let t0 = Instant::now();
    // Let it load the table: at least 10 s, then until its RSS has not grown
    // for 3 s (up to 90 s).
    let mut note = String::new();
    let mut last_rss = 0;
    let mut stable_since = Instant::now();
    loop {
        sleep_checked(Duration::from_millis(500))?;
        if let Some(st) = guard.exited() {
            bail!("{label} exited early ({st}): {}", screen_tail().trim());
        }
        let (_, rss) = mem_kib(pid)?;
        if rss > last_rss {
            last_rss = rss;
            stable_since = Instant::now();
        }
        if t0.elapsed() >= Duration::from_secs(10) && stable_since.elapsed() >= Duration::from_secs(3) {
            break;
        }
        if t0.elapsed() >= Duration::from_secs(90) {
            note.push_str("warm-up cut at 90 s: RSS still growing. ");
            break;
        }
    }
    let warmup_s = t0.elapsed().as_secs_f64();
    let w = measure_window(pid, secs, &mut || {
        if pid_alive(pid) {
            None
        } else {
            Some("gone".into())
        }
    })?;
    drop(guard);
    let _ = drain.join();
    drop(master);
    if pid_alive(pid) {
        bail!("{label} (pid {pid}) survived the kill");
    }
    Ok(Steady::from_window(&w, warmup_s, &note))
}
