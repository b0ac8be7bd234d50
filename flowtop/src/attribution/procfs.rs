//! The /proc fallback: which process holds each socket of flowtop's network
//! namespace, read from the `/proc/net` tables and the `/proc/PID/fd` links.
//!
//! One [`scan`] reads every socket table of the current process's namespace
//! (`/proc/self/net/...`), then walks `/proc/[0-9]*/fd/*` once, matching the
//! `socket:[INODE]` links against the inodes of those tables. Only the
//! processes that own a matched socket have their `comm`, `exe` and `status`
//! read. Processes and descriptors come and go during the walk: whatever
//! vanished or could not be read is counted in [`ProcScan::vanished`], never
//! reported as an error.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::processes;

type Fast = foldhash::fast::RandomState;

/// One socket from /proc/net/{tcp,tcp6,udp,udp6,udplite,udplite6,raw,raw6,icmp,icmp6}.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketRecord {
    /// IP protocol: 6 tcp, 17 udp, 136 udplite, 1 icmp (ping sockets,
    /// /proc/net/icmp), 58 icmpv6 (/proc/net/icmp6); for raw sockets the
    /// socket's protocol number (the "port" column of /proc/net/raw).
    pub proto: u8,
    /// IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are normalised to IPv4.
    /// Raw sockets have no port: theirs is 0 (the column holds the protocol).
    /// Ping sockets carry their ICMP echo identifier as the port.
    pub local: SocketAddr,
    /// 0.0.0.0:0 / [::]:0 when unconnected (of the same family as `local`).
    pub remote: SocketAddr,
    /// The "st" column for tcp/tcp6 (0x0A = LISTEN), None otherwise.
    pub tcp_state: Option<u8>,
    pub uid: u32,
    pub inode: u64,
    /// The process holding it, from /proc/*/fd; None if not found (e.g.
    /// TIME_WAIT sockets have inode 0). When several processes hold the same
    /// socket (inherited descriptors, pre-forked servers, a child between
    /// fork and exec) the one that started first, i.e. the one that made it.
    /// Whenever it is Some, [`ProcScan::processes`] has that PID.
    pub pid: Option<u32>,
}

/// A process that holds at least one of the sockets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    /// The process (tgid), never a thread id.
    pub pid: u32,
    /// /proc/PID/comm without the trailing newline (lossy UTF-8).
    pub comm: String,
    /// readlink /proc/PID/exe, None when unreadable (kernel threads,
    /// permission, vanished).
    pub exe: Option<String>,
    /// Real uid, from the "Uid:" line of /proc/PID/status.
    pub uid: u32,
    /// /proc/PID/cmdline, first bytes, space separated
    /// (see [`super::processes::cmdline_of`]).
    pub cmdline: Option<String>,
    /// Field 4 of /proc/PID/stat.
    pub ppid: Option<u32>,
    /// /proc/PPID/comm.
    pub parent_comm: Option<String>,
    /// The `0::` path of /proc/PID/cgroup (issue 15).
    pub cgroup: Option<String>,
    /// The inode of /proc/PID/ns/net.
    pub netns: Option<u64>,
}

#[derive(Debug, Clone, Default)]
pub struct ProcScan {
    pub sockets: Vec<SocketRecord>,
    pub processes: HashMap<u32, ProcessInfo>,
    /// Entries that vanished or could not be read mid-scan (counted, never an error).
    pub vanished: u64,
}

/// The tables read by [`scan`]: file name, protocol, IPv6, raw.
const TABLES: &[(&str, u8, bool, bool)] = &[
    ("tcp", 6, false, false),
    ("tcp6", 6, true, false),
    ("udp", 17, false, false),
    ("udp6", 17, true, false),
    ("udplite", 136, false, false),
    ("udplite6", 136, true, false),
    ("raw", 0, false, true),
    ("raw6", 0, true, true),
    ("icmp", 1, false, false),
    ("icmp6", 58, true, false),
];

/// One full scan: every /proc/net table of the CURRENT process's network
/// namespace (`<proc_root>/self/net/...`; only these sockets can own
/// flowtop's flows), then one walk of `<proc_root>/[0-9]*/fd/*` matching
/// `socket:[INODE]` links to those inodes. Never per flow.
pub fn scan(proc_root: &Path) -> ProcScan {
    scan_net(proc_root, &proc_root.join("self").join("net"))
}

/// [`scan`] of another namespace's tables: `net` is `/proc/PID/net` of a
/// process in it (issue 15: the server behind a published port).
pub fn scan_net(proc_root: &Path, net: &Path) -> ProcScan {
    let mut out = ProcScan::default();
    // One large buffer: the kernel walks a table's whole hash (tens of
    // thousands of buckets for TCP) again for every read() that resumes it,
    // so the fewer reads the better.
    let mut buf = Vec::with_capacity(64 * 1024);
    for &(name, proto, v6, raw) in TABLES {
        buf.clear();
        match File::open(net.join(name)).and_then(|mut f| f.read_to_end(&mut buf)) {
            Ok(_) => {
                let text = String::from_utf8_lossy(&buf);
                let mut malformed = 0;
                parse_into(&text, proto, v6, raw, &mut out.sockets, &mut malformed);
                out.vanished += malformed;
            }
            // No IPv6, no udplite module: nothing to read, nothing lost.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(_) => out.vanished += 1,
        }
    }

    // inode -> first record with it; `next` chains further records with the
    // same inode (not expected, but one socket must not hide another).
    const NONE: usize = usize::MAX;
    let mut by_inode: HashMap<u64, usize, Fast> =
        HashMap::with_capacity_and_hasher(out.sockets.len(), Fast::default());
    let mut next = vec![NONE; out.sockets.len()];
    for (i, s) in out.sockets.iter().enumerate() {
        if s.inode == 0 {
            continue;
        }
        if let Some(first) = by_inode.insert(s.inode, i) {
            next[i] = first;
        }
    }
    if by_inode.is_empty() {
        return out;
    }

    let mut holders = Vec::new();
    walk_fds(proc_root, &mut out, &by_inode, &next, &mut holders);
    choose_owners(proc_root, &mut out, holders);

    // Read the owners; one that vanished meanwhile owns nothing.
    let mut pids: Vec<u32> = out.sockets.iter().filter_map(|s| s.pid).collect();
    pids.sort_unstable();
    pids.dedup();
    let mut lost: Vec<u32> = Vec::new();
    for pid in pids {
        match read_process(proc_root, pid) {
            Some(p) => {
                out.processes.insert(pid, p);
            }
            None => {
                out.vanished += 1;
                lost.push(pid);
            }
        }
    }
    if !lost.is_empty() {
        for s in &mut out.sockets {
            if s.pid.is_some_and(|p| lost.binary_search(&p).is_ok()) {
                s.pid = None;
            }
        }
    }
    out
}

/// One pass over `<proc_root>/[0-9]*/fd/*`, listing (socket index, pid) for
/// every record whose inode a process holds.
fn walk_fds(
    proc_root: &Path,
    out: &mut ProcScan,
    by_inode: &HashMap<u64, usize, Fast>,
    next: &[usize],
    holders: &mut Vec<(usize, u32)>,
) {
    let Ok(dir) = fs::read_dir(proc_root) else {
        out.vanished += 1;
        return;
    };
    let mut fd_dir = proc_root.to_path_buf();
    for entry in dir {
        let Ok(entry) = entry else {
            out.vanished += 1;
            continue;
        };
        let name = entry.file_name();
        // Top-level numeric entries are processes (tgids); threads live
        // under /proc/PID/task and are not listed here.
        let Some(pid) = parse_pid(name.as_bytes()) else {
            continue;
        };
        fd_dir.push(&name);
        fd_dir.push("fd");
        match fs::read_dir(&fd_dir) {
            Ok(fds) => {
                for fd in fds {
                    let Ok(fd) = fd else {
                        out.vanished += 1;
                        break;
                    };
                    fd_dir.push(fd.file_name());
                    let link = fs::read_link(&fd_dir);
                    fd_dir.pop();
                    let inode = match link {
                        Ok(target) => socket_inode(target.as_os_str().as_bytes()),
                        // Not ours to read (ptrace access): neither are its other fds.
                        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                            out.vanished += 1;
                            break;
                        }
                        // Closed between readdir and readlink.
                        Err(_) => {
                            out.vanished += 1;
                            continue;
                        }
                    };
                    let Some(mut i) = inode.and_then(|ino| by_inode.get(&ino).copied()) else {
                        continue;
                    };
                    loop {
                        holders.push((i, pid));
                        i = next[i];
                        if i == usize::MAX {
                            break;
                        }
                    }
                }
            }
            Err(_) => out.vanished += 1,
        }
        fd_dir.pop();
        fd_dir.pop();
    }
}

/// Sets each socket's `pid` from its holders. A socket held by several
/// processes goes to the one that started first: the lowest PID is not
/// that once PIDs wrap, and a child caught between fork and exec (still
/// holding its parent's descriptors) must not take the parent's socket.
fn choose_owners(proc_root: &Path, out: &mut ProcScan, mut holders: Vec<(usize, u32)>) {
    holders.sort_unstable();
    holders.dedup();
    let mut start_times: HashMap<u32, Option<u64>, Fast> = HashMap::default();
    let mut start_time = |pid: u32| {
        *start_times
            .entry(pid)
            .or_insert_with(|| read_start_time(proc_root, pid))
    };
    for group in holders.chunk_by(|a, b| a.0 == b.0) {
        let socket = group[0].0;
        let owner = match group {
            [(_, pid)] => *pid,
            // A holder that is already gone sorts last.
            _ => group
                .iter()
                .map(|&(_, pid)| (start_time(pid).unwrap_or(u64::MAX), pid))
                .min()
                .map(|(_, pid)| pid)
                .unwrap_or(group[0].1),
        };
        out.sockets[socket].pid = Some(owner);
    }
}

/// Field 22 of /proc/PID/stat: when the process started, in clock ticks
/// since boot. None when it is gone or the line is not understood.
fn read_start_time(proc_root: &Path, pid: u32) -> Option<u64> {
    let stat = fs::read(proc_root.join(pid.to_string()).join("stat")).ok()?;
    parse_start_time(&stat)
}

/// The comm field (2) is in parentheses and may itself contain spaces and
/// ')', so fields are counted from the last ')'.
fn parse_start_time(stat: &[u8]) -> Option<u64> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&stat[close + 1..]).ok()?;
    // After ')' come fields 3 (state) onwards: field 22 is the 20th.
    rest.split_ascii_whitespace().nth(19)?.parse().ok()
}

/// A decimal PID without sign or leading zero, as /proc names them.
fn parse_pid(name: &[u8]) -> Option<u32> {
    if name.is_empty() || name[0] == b'0' || !name.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(name).ok()?.parse().ok()
}

/// The inode of a `socket:[INODE]` link target.
fn socket_inode(target: &[u8]) -> Option<u64> {
    let digits = target.strip_prefix(b"socket:[")?.strip_suffix(b"]")?;
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// comm, exe and the real uid of one process; None when it vanished or its
/// comm or status cannot be read.
fn read_process(proc_root: &Path, pid: u32) -> Option<ProcessInfo> {
    let dir = proc_root.join(pid.to_string());
    let mut comm = fs::read(dir.join("comm")).ok()?;
    if comm.last() == Some(&b'\n') {
        comm.pop();
    }
    let status = fs::read(dir.join("status")).ok()?;
    let uid = String::from_utf8_lossy(&status)
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|u| u.parse().ok())?;
    let exe = fs::read_link(dir.join("exe"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned());
    // Three small reads more per owning process (not per socket).
    let ppid = fs::read(dir.join("stat"))
        .ok()
        .and_then(|stat| processes::parse_stat(&stat))
        .map(|(ppid, _)| ppid);
    let parent_comm = ppid
        .filter(|&p| p != 0)
        .and_then(|p| processes::read_comm(&proc_root.join(p.to_string())));
    let (cgroup, netns) = super::identity::read_proc(&dir);
    Some(ProcessInfo {
        pid,
        comm: String::from_utf8_lossy(&comm).into_owned(),
        exe,
        uid,
        cmdline: processes::read_cmdline(&dir),
        ppid,
        parent_comm,
        cgroup,
        netns,
    })
}

/// Parses the text of one /proc/net table (tcp/udp/udplite/raw/icmp and their
/// 6 variants). `proto` is the protocol for every row (tcp=6 ...) except for
/// raw tables where it is taken from the port column when `raw` is true.
/// Malformed rows are skipped; every `pid` is None.
pub fn parse_net_table(text: &str, proto: u8, v6: bool, raw: bool) -> Vec<SocketRecord> {
    let mut out = Vec::new();
    let mut malformed = 0;
    parse_into(text, proto, v6, raw, &mut out, &mut malformed);
    out
}

fn parse_into(text: &str, proto: u8, v6: bool, raw: bool, out: &mut Vec<SocketRecord>, malformed: &mut u64) {
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        match fields.next() {
            None => continue,       // blank
            Some("sl") => continue, // the header
            Some(_) => {}
        }
        match parse_row(fields, proto, v6, raw) {
            Some(r) => out.push(r),
            None => *malformed += 1,
        }
    }
}

/// One row after its "N:" slot column: local, remote, st, tx:rx, tr:when,
/// retrnsmt, uid, timeout, inode, then columns we do not need.
fn parse_row<'a>(
    mut f: impl Iterator<Item = &'a str>,
    proto: u8,
    v6: bool,
    raw: bool,
) -> Option<SocketRecord> {
    let (lip, lport) = parse_endpoint(f.next()?, v6)?;
    let (rip, rport) = parse_endpoint(f.next()?, v6)?;
    let st = hex_u8(f.next()?)?;
    let uid = f.nth(3)?.parse::<u32>().ok()?;
    let inode = f.nth(1)?.parse::<u64>().ok()?;
    let (proto, lport) = if raw {
        (u8::try_from(lport).ok()?, 0)
    } else {
        (proto, lport)
    };
    let (local, remote) = normalise_pair(SocketAddr::new(lip, lport), SocketAddr::new(rip, rport));
    Some(SocketRecord {
        proto,
        local,
        remote,
        tcp_state: (proto == 6 && !raw).then_some(st),
        uid,
        inode,
        pid: None,
    })
}

/// IPv4-mapped addresses become IPv4; an unspecified end takes the family of
/// the other end (a listener's remote `[::]:0` next to a mapped local).
fn normalise_pair(local: SocketAddr, remote: SocketAddr) -> (SocketAddr, SocketAddr) {
    let unmap = |a: SocketAddr| match a.ip() {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(a, |v4| SocketAddr::new(IpAddr::V4(v4), a.port())),
        IpAddr::V4(_) => a,
    };
    let (mut l, mut r) = (unmap(local), unmap(remote));
    let v4_unspec = |a: SocketAddr| SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), a.port());
    if l.is_ipv4() && r.is_ipv6() && r.ip().is_unspecified() {
        r = v4_unspec(r);
    } else if r.is_ipv4() && l.is_ipv6() && l.ip().is_unspecified() {
        l = v4_unspec(l);
    }
    (l, r)
}

/// `ADDR:PORT`: ADDR is one (IPv4) or four (IPv6) 32-bit words, each printed
/// in host byte order as 8 hex digits; PORT is 4 hex digits, big-endian value.
fn parse_endpoint(s: &str, v6: bool) -> Option<(IpAddr, u16)> {
    let (addr, port) = s.split_once(':')?;
    let port = u16::from_str_radix(strict_hex(port, 4)?, 16).ok()?;
    let ip = if v6 {
        let addr = strict_hex(addr, 32)?;
        let mut bytes = [0u8; 16];
        for (i, chunk) in bytes.chunks_exact_mut(4).enumerate() {
            chunk.copy_from_slice(&hex_word(&addr[i * 8..i * 8 + 8])?.to_ne_bytes());
        }
        IpAddr::V6(Ipv6Addr::from(bytes))
    } else {
        IpAddr::V4(Ipv4Addr::from(hex_word(strict_hex(addr, 8)?)?.to_ne_bytes()))
    };
    Some((ip, port))
}

/// `s` if it is exactly `len` ASCII hex digits (so slicing it is safe and
/// `from_str_radix` sees no sign).
fn strict_hex(s: &str, len: usize) -> Option<&str> {
    (s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())).then_some(s)
}

fn hex_word(s: &str) -> Option<u32> {
    u32::from_str_radix(s, 16).ok()
}

fn hex_u8(s: &str) -> Option<u8> {
    if s.is_empty() || s.len() > 2 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u8::from_str_radix(s, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::path::PathBuf;

    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("socket address")
    }

    // The fixtures are the kernel's text on a little-endian machine.
    #[cfg(target_endian = "little")]
    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1388 0100007F:0050 01 00000000:00000000 00:00000000 00000000  1000        0 23456 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:1389 0100007F:0050 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0000000000000000
";

    #[cfg(target_endian = "little")]
    #[test]
    fn tcp_listener_established_and_time_wait() {
        let rows = parse_net_table(TCP, 6, false, false);
        assert_eq!(rows.len(), 3);
        assert_eq!(
            rows[0],
            SocketRecord {
                proto: 6,
                local: sa("0.0.0.0:22"),
                remote: sa("0.0.0.0:0"),
                tcp_state: Some(0x0A),
                uid: 0,
                inode: 12345,
                pid: None,
            }
        );
        assert_eq!(
            rows[1],
            SocketRecord {
                proto: 6,
                local: sa("127.0.0.1:5000"),
                remote: sa("127.0.0.1:80"),
                tcp_state: Some(0x01),
                uid: 1000,
                inode: 23456,
                pid: None,
            }
        );
        assert_eq!((rows[2].tcp_state, rows[2].inode), (Some(0x06), 0));
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn tcp6_mapped_and_native_addresses() {
        let text = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 34567 1 0000000000000000 100 0 0 10 0
   1: 0000000000000000FFFF00000100007F:1F90 0000000000000000FFFF00000100007F:C350 01 00000000:00000000 00:00000000 00000000  1000        0 45678 1 0000000000000000 20 4 30 10 -1
   2: B80D0120000000000000000001000000:01BB B80D0120000000000000000002000000:D431 01 00000000:00000000 00:00000000 00000000    33        0 56789 1 0000000000000000 20 4 30 10 -1
   3: 0000000000000000FFFF00000100007F:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 67890 1 0000000000000000 100 0 0 10 0
";
        let rows = parse_net_table(text, 6, true, false);
        assert_eq!(rows.len(), 4);
        assert_eq!((rows[0].local, rows[0].remote), (sa("[::]:22"), sa("[::]:0")));
        assert_eq!(
            (rows[1].local, rows[1].remote),
            (sa("127.0.0.1:8080"), sa("127.0.0.1:50000"))
        );
        assert_eq!(
            rows[2],
            SocketRecord {
                proto: 6,
                local: sa("[2001:db8::1]:443"),
                remote: sa("[2001:db8::2]:54321"),
                tcp_state: Some(1),
                uid: 33,
                inode: 56789,
                pid: None,
            }
        );
        // A mapped listener's unconnected remote takes the IPv4 family too.
        assert_eq!(
            (rows[3].local, rows[3].remote),
            (sa("127.0.0.1:80"), sa("0.0.0.0:0"))
        );
        assert_eq!(rows[3].tcp_state, Some(0x0A));
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn udp_unconnected_and_connected() {
        let text = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
 1234: 00000000:14E9 00000000:0000 07 00000000:00000000 00:00000000 00000000   104        0 4567 2 0000000000000000 0
 1235: 0100007F:A000 0100007F:0035 01 00000000:00000000 00:00000000 00000000     0        0 4568 2 0000000000000000 0
";
        let rows = parse_net_table(text, 17, false, false);
        assert_eq!(
            rows[0],
            SocketRecord {
                proto: 17,
                local: sa("0.0.0.0:5353"),
                remote: sa("0.0.0.0:0"),
                tcp_state: None,
                uid: 104,
                inode: 4567,
                pid: None,
            }
        );
        assert_eq!(
            (rows[1].local, rows[1].remote),
            (sa("127.0.0.1:40960"), sa("127.0.0.1:53"))
        );
        assert_eq!(rows[1].tcp_state, None);
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn raw_takes_the_protocol_from_the_port_column() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
   1: 00000000:0001 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 5678 2 0000000000000000 0
  17: 0100007F:0011 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 5679 2 0000000000000000 0
  99: 00000000:0100 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 5680 2 0000000000000000 0
";
        let rows = parse_net_table(text, 0, false, true);
        // The third row's "protocol" 0x100 does not fit: skipped.
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[0],
            SocketRecord {
                proto: 1,
                local: sa("0.0.0.0:0"),
                remote: sa("0.0.0.0:0"),
                tcp_state: None,
                uid: 0,
                inode: 5678,
                pid: None,
            }
        );
        assert_eq!((rows[1].proto, rows[1].local), (17, sa("127.0.0.1:0")));
        // A raw socket of protocol 6 is not a TCP socket: no state.
        let tcp_raw = text.replace("00000000:0001", "00000000:0006");
        assert_eq!(parse_net_table(&tcp_raw, 0, false, true)[0].tcp_state, None);
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn icmp_ping_sockets_carry_the_echo_id() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  45: 00000000:002D 00000000:0000 07 00000000:00000000 00:00000000 00000000  1000        0 7788 2 0000000000000000 0
  46: 0100007F:1234 0100007F:0000 01 00000000:00000000 00:00000000 00000000  1000        0 7789 2 0000000000000000 0
";
        let rows = parse_net_table(text, 1, false, false);
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].proto, rows[0].local, rows[0].remote),
            (1, sa("0.0.0.0:45"), sa("0.0.0.0:0"))
        );
        assert_eq!(
            (rows[1].local, rows[1].remote, rows[1].uid),
            (sa("127.0.0.1:4660"), sa("127.0.0.1:0"), 1000)
        );
        let icmp6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  45: 00000000000000000000000001000000:002D 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000  1000        0 7790 2 0000000000000000 0
";
        let rows = parse_net_table(icmp6, 58, true, false);
        assert_eq!((rows[0].proto, rows[0].local), (58, sa("[::1]:45")));
    }

    #[test]
    fn malformed_rows_are_skipped_and_counted() {
        let text = "  sl  local_address rem_address   st
garbage
   0: 0100007F:1F90 0100007F
   1: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0
   2: +100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1
   3: 0100007é:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1
   4: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 99 1

";
        let mut out = Vec::new();
        let mut malformed = 0;
        parse_into(text, 6, false, false, &mut out, &mut malformed);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].inode, 99);
        assert_eq!(malformed, 5);
        // An IPv4 row in an IPv6 table and the reverse.
        assert!(parse_net_table(text, 6, true, false).is_empty());
    }

    fn format_row(local: SocketAddr, remote: SocketAddr, st: u8, uid: u32, inode: u64) -> String {
        fn addr(a: IpAddr) -> String {
            match a {
                IpAddr::V4(v4) => format!("{:08X}", u32::from_ne_bytes(v4.octets())),
                IpAddr::V6(v6) => v6
                    .octets()
                    .chunks_exact(4)
                    .map(|c| format!("{:08X}", u32::from_ne_bytes([c[0], c[1], c[2], c[3]])))
                    .collect(),
            }
        }
        format!(
            "   0: {}:{:04X} {}:{:04X} {:02X} 00000000:00000000 00:00000000 00000000 {:5} 0 {} 1 0000000000000000 100 0 0 10 0\n",
            addr(local.ip()),
            local.port(),
            addr(remote.ip()),
            remote.port(),
            st,
            uid,
            inode
        )
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in any::<String>(), proto in any::<u8>(), v6 in any::<bool>(), raw in any::<bool>()) {
            let _ = parse_net_table(&text, proto, v6, raw);
        }

        #[test]
        fn row_like_text_never_panics(text in "([ 0-9A-Fa-f:\n]|sl|é){0,200}", v6 in any::<bool>(), raw in any::<bool>()) {
            let _ = parse_net_table(&text, 6, v6, raw);
        }

        // Encoded the way the kernel prints them on this machine's byte order.
        #[test]
        fn kernel_format_round_trips(
            l4 in any::<[u8; 4]>(), r4 in any::<[u8; 4]>(), l6 in any::<[u8; 16]>(), r6 in any::<[u8; 16]>(),
            lp in any::<u16>(), rp in any::<u16>(), st in any::<u8>(), uid in any::<u32>(), inode in any::<u64>(),
        ) {
            let (l, r) = (SocketAddr::from((l4, lp)), SocketAddr::from((r4, rp)));
            let rows = parse_net_table(&format_row(l, r, st, uid, inode), 6, false, false);
            prop_assert_eq!(rows, vec![SocketRecord { proto: 6, local: l, remote: r, tcp_state: Some(st), uid, inode, pid: None }]);

            let (l, r) = (SocketAddr::from((l6, lp)), SocketAddr::from((r6, rp)));
            let rows = parse_net_table(&format_row(l, r, st, uid, inode), 17, true, false);
            prop_assert_eq!(rows.len(), 1);
            prop_assert_eq!((rows[0].local, rows[0].remote), normalise_pair(l, r));
            prop_assert_eq!(rows[0].tcp_state, None);
        }
    }

    /// Processes start and exit all through the walk (their /proc entries
    /// vanish between listing and reading): every scan completes, and this
    /// process's socket is attributed each time.
    #[test]
    fn live_scans_survive_processes_vanishing_mid_walk() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind tcp");
        let addr = listener.local_addr().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let churn = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut started = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    // Each child lives for a moment and leaves its /proc entry behind.
                    if std::process::Command::new("true").status().is_ok() {
                        started += 1;
                    }
                }
                started
            })
        };
        let me = std::process::id();
        for _ in 0..40 {
            let scan = scan(Path::new("/proc"));
            let mine = scan.sockets.iter().find(|s| s.proto == 6 && s.local == addr);
            assert_eq!(mine.and_then(|s| s.pid), Some(me), "the listener lost its owner");
            assert!(scan.processes.contains_key(&me));
        }
        stop.store(true, Ordering::Relaxed);
        let started = churn.join().expect("churn thread");
        assert!(started > 0, "no process was started during the scans");
    }

    #[test]
    fn live_scan_finds_this_process() {
        use std::net::{TcpListener, UdpSocket};
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind tcp");
        let peer = UdpSocket::bind("127.0.0.1:0").expect("bind udp peer");
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        udp.connect(peer.local_addr().expect("peer addr"))
            .expect("connect udp");
        let (tcp_addr, udp_addr) = (
            listener.local_addr().expect("addr"),
            udp.local_addr().expect("addr"),
        );

        let scan = scan(Path::new("/proc"));
        let me = std::process::id();
        let tcp = scan
            .sockets
            .iter()
            .find(|s| s.proto == 6 && s.local == tcp_addr)
            .expect("the listener");
        assert_eq!(
            (tcp.pid, tcp.tcp_state, tcp.remote),
            (Some(me), Some(0x0A), sa("0.0.0.0:0"))
        );
        let u = scan
            .sockets
            .iter()
            .find(|s| s.proto == 17 && s.local == udp_addr)
            .expect("the udp socket");
        assert_eq!((u.pid, u.tcp_state), (Some(me), None));
        assert_eq!(u.remote, peer.local_addr().expect("peer addr"));

        let p = &scan.processes[&me];
        let comm = fs::read_to_string("/proc/self/comm").expect("comm");
        assert_eq!(p.comm, comm.trim_end_matches('\n'));
        assert_eq!(p.pid, me);
        assert_eq!(
            p.exe,
            fs::read_link("/proc/self/exe")
                .ok()
                .map(|e| e.to_string_lossy().into_owned())
        );
        let status = fs::read_to_string("/proc/self/status").expect("status");
        let uid_line = status.lines().find(|l| l.starts_with("Uid:")).expect("Uid line");
        assert_eq!(
            p.uid.to_string(),
            uid_line.split_whitespace().nth(1).expect("real uid")
        );
        // SAFETY: getppid has no preconditions.
        let ppid = unsafe { libc::getppid() } as u32;
        assert_eq!(p.ppid, Some(ppid));
        assert_eq!(
            p.parent_comm,
            processes::read_comm(&Path::new("/proc").join(ppid.to_string()))
        );
        let cmdline = fs::read("/proc/self/cmdline").expect("cmdline");
        assert_eq!(p.cmdline, processes::cmdline_of(&cmdline));
        // Every owner named by a socket is described.
        assert!(scan
            .sockets
            .iter()
            .filter_map(|s| s.pid)
            .all(|pid| scan.processes.contains_key(&pid)));
    }

    /// A temporary directory removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            use std::sync::atomic::{AtomicU32, Ordering};
            static N: AtomicU32 = AtomicU32::new(0);
            let p = std::env::temp_dir().join(format!(
                "flowtop-procfs-{tag}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&p);
            fs::create_dir_all(&p).expect("temp dir");
            TempDir(p)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn fake_process(root: &Path, pid: u32, comm: Option<&str>, fds: &[(u32, &str)]) {
        let dir = root.join(pid.to_string());
        fs::create_dir_all(dir.join("fd")).expect("fd dir");
        if let Some(c) = comm {
            fs::write(dir.join("comm"), format!("{c}\n")).expect("comm");
        }
        fs::write(
            dir.join("status"),
            format!("Name:\tx\nUid:\t{}\t0\t0\t0\nGid:\t0\t0\t0\t0\n", 1000 + pid),
        )
        .expect("status");
        for (fd, target) in fds {
            std::os::unix::fs::symlink(target, dir.join("fd").join(fd.to_string())).expect("fd link");
        }
    }

    /// `<root>/self/net/tcp` with a listener on 127.0.0.1:PORT per (inode, port).
    fn fake_tcp_table(root: &Path, rows: &[(u64, u16)]) {
        let mut text = String::from("  sl  local_address rem_address   st\n");
        for (inode, port) in rows {
            text += &format!(
                "   0: 0100007F:{port:04X} 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 {inode} 1\n"
            );
        }
        fs::write(root.join("self/net/tcp"), text).expect("tcp table");
    }

    /// /proc/PID/stat with the given start time (field 22).
    fn fake_stat(root: &Path, pid: u32, comm: &str, start: u64) {
        let line = format!("{pid} ({comm}) S 1 1 1 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 {start} 1000 10\n");
        fs::write(root.join(pid.to_string()).join("stat"), line).expect("stat");
    }

    #[test]
    fn start_time_is_field_22_even_with_odd_comm() {
        let line = b"77 (a) b (c)) R 1 1 1 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 123456 1000 10\n";
        assert_eq!(parse_start_time(line), Some(123456));
        assert_eq!(parse_start_time(b"77 (a) R 1 1"), None);
        assert_eq!(parse_start_time(b"garbage"), None);
    }

    /// PIDs wrap: a child caught between fork and exec, with a lower PID
    /// than its parent, still holds the parent's socket. The parent (started
    /// first) owns it; a holder whose stat is gone loses to one that has it.
    #[test]
    fn shared_socket_goes_to_the_process_that_started_first() {
        let tmp = TempDir::new("shared");
        let root = &tmp.0;
        fs::create_dir_all(root.join("self/net")).expect("net dir");
        fake_tcp_table(root, &[(5000, 1), (5001, 2)]);
        fake_process(root, 32000, Some("parent"), &[(3, "socket:[5000]")]);
        fake_stat(root, 32000, "parent", 1_000);
        fake_process(root, 333, Some("child"), &[(3, "socket:[5000]")]);
        fake_stat(root, 333, "child", 9_000);
        // 40 holds 5001 but its stat cannot be read; 41 can.
        fake_process(root, 40, Some("gone"), &[(7, "socket:[5001]")]);
        fake_process(root, 41, Some("here"), &[(7, "socket:[5001]")]);
        fake_stat(root, 41, "here", 5_000);

        let scan = scan(root);
        assert_eq!((scan.sockets[0].inode, scan.sockets[0].pid), (5000, Some(32000)));
        assert_eq!((scan.sockets[1].inode, scan.sockets[1].pid), (5001, Some(41)));
        assert_eq!(scan.processes[&32000].comm, "parent");
    }

    #[test]
    fn fake_proc_with_vanishing_processes() {
        let tmp = TempDir::new("fake");
        let root = &tmp.0;
        fs::create_dir_all(root.join("self/net")).expect("net dir");
        fake_tcp_table(root, &[(4242, 1), (4343, 2), (0, 3)]);
        // 123 holds 4242 (and a pipe, and a socket of another namespace).
        fake_process(
            root,
            123,
            Some("srv\u{1b}name"),
            &[(0, "pipe:[77]"), (3, "socket:[4242]"), (4, "socket:[999999]")],
        );
        // 456 inherited 4242 too: the one that started first owns it.
        fake_process(root, 456, Some("worker"), &[(3, "socket:[4242]")]);
        fake_stat(root, 123, "srv\u{1b}name", 100);
        fake_stat(root, 456, "worker", 200);
        // 999 has no fd directory at all (exited between readdir and open).
        fs::create_dir_all(root.join("999")).expect("999");
        // 1000 holds 4343 but vanished before its comm was read.
        fake_process(root, 1000, None, &[(5, "socket:[4343]")]);
        // Not processes.
        fs::create_dir_all(root.join("sys/fd")).expect("sys");
        fs::create_dir_all(root.join("0123/fd")).expect("0123");

        let scan = scan(root);
        assert_eq!(scan.sockets.len(), 3);
        assert_eq!((scan.sockets[0].inode, scan.sockets[0].pid), (4242, Some(123)));
        assert_eq!((scan.sockets[1].inode, scan.sockets[1].pid), (4343, None));
        assert_eq!((scan.sockets[2].inode, scan.sockets[2].pid), (0, None));
        assert_eq!(scan.processes.len(), 1);
        assert_eq!(
            scan.processes[&123],
            ProcessInfo {
                pid: 123,
                comm: "srv\u{1b}name".into(),
                exe: None,
                uid: 1123,
                cmdline: None,
                ppid: Some(1),
                parent_comm: None,
                cgroup: None,
                netns: None,
            }
        );
        // 999's fd directory and 1000's comm.
        assert_eq!(scan.vanished, 2);
    }

    #[test]
    fn fake_proc_without_tables_or_sockets() {
        let tmp = TempDir::new("empty");
        let scan = scan(&tmp.0);
        assert!(scan.sockets.is_empty() && scan.processes.is_empty());
        assert_eq!(scan.vanished, 0);
        assert!(scan_missing_root().sockets.is_empty());
    }

    fn scan_missing_root() -> ProcScan {
        scan(Path::new("/nonexistent/flowtop/proc"))
    }

    #[test]
    fn pid_and_inode_parsing() {
        assert_eq!(parse_pid(b"1"), Some(1));
        assert_eq!(parse_pid(b"4194304"), Some(4194304));
        assert_eq!(parse_pid(b"self"), None);
        assert_eq!(parse_pid(b"01"), None);
        assert_eq!(parse_pid(b"99999999999"), None);
        assert_eq!(socket_inode(b"socket:[12345]"), Some(12345));
        assert_eq!(socket_inode(b"socket:[]"), None);
        assert_eq!(socket_inode(b"socket:[+1]"), None);
        assert_eq!(socket_inode(b"anon_inode:[eventfd]"), None);
        assert_eq!(socket_inode(b"/dev/null"), None);
    }
}
