//! What the loopback cost examples (`attribution_cost.rs`, `names_cost.rs`)
//! share: the thread CPU clock, the TCP ping-pong, one side's run in a
//! fresh network namespace, and the report's statistics and header facts.
//! Included by each with `#[path = "common/pingpong.rs"] mod pingpong;`
//! (a directory without `main.rs` is not an example of its own).

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

/// CPU time of the calling thread. A single-threaded loopback exchange runs
/// the whole path (send, the egress programs, softirq delivery, receive) on
/// this thread, so this counts the programs' cost but not the time other
/// work on a shared machine holds the CPU, which wall time would.
pub struct CpuClock(Duration);

impl CpuClock {
    pub fn now() -> Self {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: a valid timespec to fill; this clock always exists.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        assert_eq!(rc, 0, "clock_gettime");
        Self(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
    }

    pub fn elapsed(&self) -> Duration {
        Self::now().0.saturating_sub(self.0)
    }
}

/// One-byte TCP ping-pongs (TCP_NODELAY) between a connecting client and an
/// accepted server socket: `warm_up` untimed round trips, then the CPU time
/// of `n` timed ones on the same sockets.
pub fn tcp_ping_pongs(warm_up: usize, n: usize) -> Duration {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let (mut server, _) = listener.accept().expect("accept");
    client.set_nodelay(true).expect("nodelay");
    server.set_nodelay(true).expect("nodelay");
    let mut byte = [0u8; 1];
    let mut round = |client: &mut TcpStream, server: &mut TcpStream| {
        client.write_all(b"x").expect("write");
        server.read_exact(&mut byte).expect("read");
        server.write_all(b"y").expect("write");
        client.read_exact(&mut byte).expect("read");
    };
    for _ in 0..warm_up {
        round(&mut client, &mut server);
    }
    let t = CpuClock::now();
    for _ in 0..n {
        round(&mut client, &mut server);
    }
    t.elapsed()
}

/// Runs `measure` on a thread of its own in a new network namespace with
/// only `lo` up; returns its result and the namespace, which the caller
/// keeps open so that it is torn down only at the end of the run.
pub fn in_fresh_netns<T: Send + 'static>(measure: impl FnOnce() -> T + Send + 'static) -> (T, File) {
    std::thread::spawn(move || {
        // SAFETY: unshare(CLONE_NEWNET) only moves this thread (its later
        // sockets, and threads it spawns) to a new network namespace.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(
            rc,
            0,
            "unshare(CLONE_NEWNET): {}",
            std::io::Error::last_os_error()
        );
        loopback_up();
        let netns = File::open("/proc/thread-self/ns/net").expect("open the new netns");
        (measure(), netns)
    })
    .join()
    .expect("measurement thread")
}

/// Sets `lo` up in the calling thread's network namespace.
fn loopback_up() {
    // SAFETY: plain socket/ioctl calls on a zeroed ifreq naming "lo"; the
    // descriptor is closed before returning.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo".iter().enumerate() {
            ifr.ifr_name[i] = *b as libc::c_char;
        }
        let get = libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut ifr);
        ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        let set = libc::ioctl(fd, libc::SIOCSIFFLAGS, &ifr);
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        assert!(get == 0 && set == 0, "setting lo up: {err}");
    }
}

/// The median; NaN for no values.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// A ratio as a signed percentage change: 1.023 is "+2.3%".
pub fn pct(ratio: f64) -> String {
    format!("{:+.1}%", (ratio - 1.0) * 100.0)
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(["-C", env!("CARGO_MANIFEST_DIR")])
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// What a report's header says about its run: the commit measured, the
/// load average before and after, how long it took.
pub struct Run {
    commit: String,
    dirty: bool,
    load_before: String,
    started: Instant,
}

impl Run {
    pub fn start() -> Self {
        let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".to_owned());
        // The report itself is rewritten by the run: only other changes count.
        let dirty = git(&[
            "status",
            "--porcelain",
            "--untracked-files=no",
            "--",
            ".",
            ":!bench",
        ])
        .is_some_and(|s| !s.is_empty());
        Self {
            commit,
            dirty,
            load_before: loadavg(),
            started: Instant::now(),
        }
    }

    /// Ends the run: the header lines (and a blank one), with `reproduce`,
    /// the command that runs it again.
    pub fn finish(self, reproduce: &str) -> String {
        let load_after = loadavg();
        let elapsed = self.started.elapsed().as_secs();
        format!(
            "- commit: {}{}\n- reproduce: `{reproduce}` (as root)\n\
             - load average (1 min) before / after: {} / {load_after} on {} CPUs; {elapsed} s\n\n",
            self.commit,
            if self.dirty {
                " with uncommitted changes"
            } else {
                ""
            },
            self.load_before,
            std::thread::available_parallelism().map_or(0, |n| n.get()),
        )
    }
}

/// The 1-minute load average, "?" where it cannot be read.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

/// Round `round`'s (from 1) order of the three `sides`: the rounds rotate
/// through three orders, so that each side is first, second and last
/// equally often and drift during the run (other work on the machine,
/// caches) favours none.
pub fn order_of_round<K: Copy>(sides: [K; 3], round: usize) -> [K; 3] {
    let mut order = sides;
    order.rotate_left((round - 1) % 3);
    order
}
