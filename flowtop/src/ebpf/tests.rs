use super::*;
use super::{btf::*, kprobes::*, sock_events::*};
use flowtop_testkit::skip::{require_root, skip};

/// The reason a load of `object` fails with (the object must not load).
fn load_failure(object: &[u8]) -> String {
    match load_object(
        object,
        aya::VerifierLogLevel::DISABLE,
        LoadFor::Cgroup,
        NameGlobals::ON,
    ) {
        Ok(_) => panic!("a bad object loaded"),
        Err(reason) => reason,
    }
}

#[test]
fn a_corrupt_object_is_rejected_with_the_aya_error() {
    // Starts like an ELF file but is not one: aya's parser must reject it
    // before any syscall, so this behaves the same as root or not.
    let mut bogus = vec![0u8; 256];
    bogus[..4].copy_from_slice(b"\x7fELF");
    let reason = load_failure(&bogus);
    assert!(reason.starts_with("loading the eBPF object failed: "), "{reason}");
    // The Debug form of the aya error is kept, not just its Display.
    assert!(reason.contains("ParseError"), "{reason}");
}

#[test]
fn an_empty_object_is_rejected() {
    let reason = load_failure(&[]);
    assert!(reason.contains("eBPF object"), "{reason}");
}

#[test]
fn the_privilege_hint_is_added_only_for_non_root() {
    let reason = with_privilege_hint("boom".to_owned());
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        assert_eq!(reason, "boom");
    } else {
        assert!(reason.starts_with("boom (not running as root"), "{reason}");
    }
}

/// Built without the toolchain: both paths must say so and how to fix it.
/// (`cargo xtask degrade` looks for this test by name.)
#[cfg(flowtop_no_ebpf)]
#[test]
fn without_the_object_the_status_explains_how_to_get_it() {
    let reason = start_sock_events(|_| true).expect_err("no object");
    assert!(reason.contains("built without the eBPF object"), "{reason}");
    assert!(
        reason.contains("FLOWTOP_NO_EBPF") || reason.contains("cargo xtask setup"),
        "{reason}"
    );
    let report = probe_kprobes();
    assert_eq!(report.reason.as_deref(), Some(reason.as_str()), "{report:?}");
}

/// Built with the toolchain: the embedded object is a BPF ELF holding the
/// socket programs and their maps (checked without loading it).
#[cfg(not(flowtop_no_ebpf))]
#[test]
fn the_embedded_object_holds_the_socket_programs_and_maps() {
    assert_eq!(&OBJECT[..4], b"\x7fELF", "not an ELF file");
    assert_eq!(OBJECT[4], 2, "not ELF64");
    assert_eq!(OBJECT[5], 1, "not little-endian");
    let e_machine = u16::from_le_bytes([OBJECT[18], OBJECT[19]]);
    assert_eq!(e_machine, 247, "e_machine is not EM_BPF");
    let contains = |needle: &[u8]| OBJECT.windows(needle.len()).any(|w| w == needle);
    for needle in [
        "cgroup/sock_create",
        "cgroup/post_bind4",
        "cgroup/post_bind6",
        "cgroup_skb/egress",
        PROG_SOCK_CREATE,
        flowtop_common::PROG_SOCK_POST_BIND4,
        flowtop_common::PROG_SOCK_POST_BIND6,
        PROG_SOCK_EGRESS,
        MAP_SOCK_EVENTS,
        MAP_SOCK_SEEN,
        flowtop_common::MAP_SOCK_STATE,
        MAP_SOCK_EVENTS_LOST,
        "cgroup_skb/ingress",
        flowtop_common::PROG_NAME_INGRESS,
        flowtop_common::MAP_NAME_EVENTS,
        flowtop_common::MAP_NAME_EVENTS_LOST,
        flowtop_common::MAP_NAME_STREAM,
        flowtop_common::GLOBAL_INSPECT,
        flowtop_common::GLOBAL_NAME_NETNS_COOKIE,
        // The socket-storage map is a BTF map: it needs both sections.
        ".maps",
        ".BTF",
    ] {
        assert!(contains(needle.as_bytes()), "no {needle} in the object");
    }
    // The tracepoint program is gone for good.
    assert!(!contains(b"tracepoint/"), "a tracepoint section is back");
}

// -- socket ownership events -------------------------------------------

#[test]
fn the_sock_event_layout_is_fixed() {
    use flowtop_common::sock_event_offsets as off;
    assert_eq!(std::mem::size_of::<SockEvent>(), 96);
    assert_eq!(std::mem::align_of::<SockEvent>(), 8);
    assert_eq!(std::mem::size_of::<flowtop_common::SockTuple>(), 40);
    assert_eq!(std::mem::size_of::<flowtop_common::SockTupleKey>(), 48);
    assert_eq!(
        [
            off::KIND,
            off::TGID,
            off::UID,
            off::PROTOCOL,
            off::FAMILY,
            off::COOKIE
        ],
        [0, 4, 8, 12, 14, 16]
    );
    assert_eq!(
        [off::NETNS_COOKIE, off::COMM, off::LOCAL_PORT, off::REMOTE_PORT],
        [24, 32, 48, 50]
    );
    assert_eq!([off::LOCAL_ADDR, off::REMOTE_ADDR, off::CGROUP_ID], [56, 72, 88]);
}

#[test]
fn a_ring_buffer_record_decodes_little_endian_fields() {
    let mut rec = vec![0u8; 96];
    rec[0..4].copy_from_slice(&2u32.to_le_bytes());
    rec[4..8].copy_from_slice(&4242u32.to_le_bytes());
    rec[12..14].copy_from_slice(&17u16.to_le_bytes());
    rec[14..16].copy_from_slice(&2u16.to_le_bytes());
    rec[16..24].copy_from_slice(&0x0102_0304_0506_0708u64.to_le_bytes());
    rec[32..39].copy_from_slice(b"python3");
    rec[48..50].copy_from_slice(&5353u16.to_le_bytes());
    rec[50..52].copy_from_slice(&53u16.to_le_bytes());
    rec[56..60].copy_from_slice(&[127, 0, 0, 1]);
    rec[72..76].copy_from_slice(&[192, 0, 2, 7]);
    rec[88..96].copy_from_slice(&0x1234u64.to_le_bytes());
    // An odd start: the decoder must not assume alignment.
    let mut shifted = vec![0u8];
    shifted.extend_from_slice(&rec);
    let ev = parse_sock_event(&shifted[1..]).expect("decodes");
    assert_eq!(ev.kind, flowtop_common::SOCK_EVENT_TUPLE);
    assert_eq!((ev.tgid, ev.protocol, ev.family), (4242, 17, 2));
    assert_eq!(ev.cookie, 0x0102_0304_0506_0708);
    assert_eq!(ev.comm_bytes(), b"python3");
    assert_eq!((ev.local_port, ev.remote_port), (5353, 53));
    assert_eq!(ev.local_addr[..4], [127, 0, 0, 1]);
    assert_eq!(ev.remote_addr[..4], [192, 0, 2, 7]);
    assert_eq!(ev.cgroup_id, 0x1234);
    assert_eq!(parse_sock_event(&rec[..95]), None);
}

#[test]
fn the_cgroup2_root_prefers_the_hybrid_unified_mount() {
    let hybrid = "tmpfs /sys/fs/cgroup tmpfs ro 0 0\n\
                  cgroup2 /sys/fs/cgroup/unified cgroup2 rw,nsdelegate 0 0\n\
                  cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n";
    assert_eq!(
        cgroup2_root_in(hybrid),
        Some(PathBuf::from("/sys/fs/cgroup/unified"))
    );
    let unified = "cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n";
    assert_eq!(cgroup2_root_in(unified), Some(PathBuf::from("/sys/fs/cgroup")));
    let elsewhere = "proc /proc proc rw 0 0\ncgroup2 /mnt/cg cgroup2 rw 0 0\n";
    assert_eq!(cgroup2_root_in(elsewhere), Some(PathBuf::from("/mnt/cg")));
    assert_eq!(cgroup2_root_in("cgroup /sys/fs/cgroup/cpu cgroup rw 0 0\n"), None);
}

#[test]
fn starting_sock_events_on_a_corrupt_object_fails_with_a_reason() {
    let mut bogus = vec![0u8; 256];
    bogus[..4].copy_from_slice(b"\x7fELF");
    match attach_sock_events_object(&bogus) {
        Ok(handle) => panic!("started on a corrupt object: {handle:?}"),
        // Either no cgroup2 mount here or aya's parse error.
        Err(reason) => assert!(
            reason.contains("ParseError") || reason.contains("cgroup2"),
            "{reason}"
        ),
    }
}

#[cfg(flowtop_no_ebpf)]
#[test]
fn without_the_object_sock_events_explain_how_to_get_it() {
    let reason = start_sock_events(|_| true).expect_err("no object");
    assert!(reason.contains("built without the eBPF object"), "{reason}");
}

/// Collects delivered events for the root-only tests.
struct Events {
    handle: SockEventsHandle,
    rx: std::sync::mpsc::Receiver<Vec<SockEvent>>,
    seen: Vec<SockEvent>,
}

impl Events {
    fn start() -> Self {
        let (tx, rx) = std::sync::mpsc::channel();
        let handle = start_sock_events(move |batch| tx.send(batch).is_ok())
            .unwrap_or_else(|e| panic!("start_sock_events: {e}"));
        assert_eq!(
            handle.programs(),
            [
                "cgroup/sock_create",
                "cgroup/post_bind4",
                "cgroup/post_bind6",
                "cgroup_skb/egress",
                "cgroup_skb/ingress",
                "raw_tp/sched_process_exec",
                "raw_tp/sched_process_fork"
            ]
        );
        Self {
            handle,
            rx,
            seen: Vec::new(),
        }
    }

    /// Waits (up to 5 s) until `pred` holds for an event; returns it.
    fn wait_for(&mut self, what: &str, pred: impl Fn(&SockEvent) -> bool) -> SockEvent {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(ev) = self.seen.iter().find(|e| pred(e)) {
                return *ev;
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(batch) => self.seen.extend(batch),
                Err(_) => panic!(
                    "no {what} event within 5 s; {} events seen, lost {:?}",
                    self.seen.len(),
                    self.handle.lost_events()
                ),
            }
        }
    }

    /// Takes whatever arrives within `d`.
    fn drain_for(&mut self, d: Duration) {
        let deadline = std::time::Instant::now() + d;
        while let Ok(batch) = self
            .rx
            .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
        {
            self.seen.extend(batch);
        }
    }
}

/// The kernel's cookie of a socket (`SO_COOKIE`), as the programs see it.
pub(super) fn socket_cookie(fd: &impl std::os::fd::AsRawFd) -> u64 {
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: valid fd, pointer and length.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "SO_COOKIE: {}", io::Error::last_os_error());
    cookie
}

fn thread_comm() -> Vec<u8> {
    let comm = std::fs::read("/proc/thread-self/comm").expect("comm");
    comm.strip_suffix(b"\n").unwrap_or(&comm).to_vec()
}

/// The cgroup v2 id of this process: the inode number of its cgroup's
/// directory (`0::/path` in /proc/self/cgroup, under the cgroup2 mount).
fn own_cgroup_id() -> Option<u64> {
    use std::os::unix::fs::MetadataExt as _;
    let root = cgroup2_root()?;
    let lines = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = lines.lines().find_map(|l| l.strip_prefix("0::"))?;
    let dir = root.join(path.trim_start_matches('/'));
    Some(std::fs::metadata(dir).ok()?.ino())
}

fn is_created(e: &SockEvent) -> bool {
    e.kind == flowtop_common::SOCK_EVENT_CREATED
}

fn is_tuple(e: &SockEvent) -> bool {
    e.kind == flowtop_common::SOCK_EVENT_TUPLE
}

const LOOPBACK4: [u8; 16] = [127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn sock_events_attribute_a_tcp_connection_to_this_process() {
    use std::io::{Read as _, Write as _};
    if !require_root() {
        return;
    }

    let mut events = Events::start();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local_addr");
    let mut client = std::net::TcpStream::connect(addr).expect("connect");
    let (mut server, _) = listener.accept().expect("accept");
    client.write_all(b"x").expect("write");
    let mut buf = [0u8; 1];
    server.read_exact(&mut buf).expect("read");
    let cookie = socket_cookie(&client);
    let client_port = client.local_addr().expect("client addr").port();

    let created = events.wait_for("CREATED", |e| is_created(e) && e.cookie == cookie);
    assert_eq!(created.tgid, std::process::id(), "{created:?}");
    assert_eq!(created.comm_bytes(), thread_comm().as_slice(), "{created:?}");
    // SAFETY: getuid has no preconditions.
    assert_eq!(created.uid, unsafe { libc::getuid() });
    assert_eq!((created.protocol, created.family), (6, 2), "{created:?}");
    if let Some(netns) = own_netns_cookie() {
        assert_eq!(created.netns_cookie, netns, "{created:?}");
    }
    if let Some(cgroup) = own_cgroup_id() {
        assert_eq!(created.cgroup_id, cgroup, "{created:?}");
    }
    // The creator's namespace, read by the kernel (what names another
    // namespace's socket once its process is gone).
    let own_ns = std::fs::metadata("/proc/self/ns/net").expect("own netns");
    assert_eq!(
        u64::from(created.netns_inode),
        std::os::unix::fs::MetadataExt::ino(&own_ns),
        "{created:?}"
    );

    let tuple = events.wait_for("TUPLE", |e| is_tuple(e) && e.cookie == cookie);
    assert_eq!((tuple.local_port, tuple.remote_port), (client_port, addr.port()));
    assert_eq!((tuple.protocol, tuple.family), (6, 2), "{tuple:?}");
    assert_eq!((tuple.local_addr, tuple.remote_addr), (LOOPBACK4, LOOPBACK4));

    // The listener's bind(2): its address and port (post_bind4).
    let listener_cookie = socket_cookie(&listener);
    let bound = events.wait_for("BOUND", |e| {
        e.kind == flowtop_common::SOCK_EVENT_BOUND && e.cookie == listener_cookie
    });
    assert_eq!(
        (bound.local_addr, bound.local_port),
        (LOOPBACK4, addr.port()),
        "{bound:?}"
    );
    assert_eq!(
        (bound.protocol, bound.family, bound.remote_port),
        (6, 2, 0),
        "{bound:?}"
    );

    // The accepted socket reports nothing: it sends no SYN (TCP tuples
    // come from SYNs only) and was not made by socket(2); userspace
    // matches accepted connections to their listener.
    let server_cookie = socket_cookie(&server);
    events.drain_for(Duration::from_millis(300));
    assert!(
        !events.seen.iter().any(|e| e.cookie == server_cookie),
        "no event for the accepted socket"
    );

    // Steady traffic on a known tuple adds no events.
    for _ in 0..20 {
        client.write_all(b"y").expect("write");
        server.read_exact(&mut buf).expect("read");
    }
    events.drain_for(Duration::from_millis(300));
    let tuples = events
        .seen
        .iter()
        .filter(|e| is_tuple(e) && e.cookie == cookie)
        .count();
    assert_eq!(tuples, 1, "duplicate TUPLE events for one connection");
    assert!(events.handle.is_running());
}

#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn sock_events_report_ipv6_tuples() {
    if !require_root() {
        return;
    }
    let mut events = Events::start();
    let Ok(listener) = std::net::TcpListener::bind("[::1]:0") else {
        skip("no ::1 here (IPv6 loopback unavailable): the IPv6 tuple was not checked");
        return;
    };
    let addr = listener.local_addr().expect("local_addr");
    let client = std::net::TcpStream::connect(addr).expect("connect");
    let cookie = socket_cookie(&client);
    let tuple = events.wait_for("TUPLE", |e| is_tuple(e) && e.cookie == cookie);
    let mut lo6 = [0u8; 16];
    lo6[15] = 1;
    assert_eq!((tuple.protocol, tuple.family), (6, 10), "{tuple:?}");
    assert_eq!((tuple.local_addr, tuple.remote_addr), (lo6, lo6));
    assert_eq!(tuple.remote_port, addr.port());
    let created = events.wait_for("CREATED", |e| is_created(e) && e.cookie == cookie);
    assert_eq!((created.tgid, created.family), (std::process::id(), 10));
    // The listener's bind(2) (post_bind6).
    let listener_cookie = socket_cookie(&listener);
    let bound = events.wait_for("BOUND", |e| {
        e.kind == flowtop_common::SOCK_EVENT_BOUND && e.cookie == listener_cookie
    });
    assert_eq!(
        (bound.local_addr, bound.local_port, bound.family),
        (lo6, addr.port(), 10)
    );
}

#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn sock_events_report_each_destination_of_an_unconnected_udp_socket() {
    if !require_root() {
        return;
    }
    let mut events = Events::start();
    let sink1 = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind sink");
    let sink2 = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind sink");
    let (p1, p2) = (
        sink1.local_addr().expect("addr").port(),
        sink2.local_addr().expect("addr").port(),
    );
    // Bound to the wildcard address: the local address comes from the
    // packet too.
    let sender = std::net::UdpSocket::bind("0.0.0.0:0").expect("bind sender");
    let sport = sender.local_addr().expect("addr").port();
    let cookie = socket_cookie(&sender);
    for port in [p1, p2, p1, p2, p1] {
        sender.send_to(b"x", ("127.0.0.1", port)).expect("send_to");
    }
    for port in [p1, p2] {
        let t = events.wait_for("UDP TUPLE", |e| {
            is_tuple(e) && e.cookie == cookie && e.remote_port == port
        });
        assert_eq!((t.protocol, t.family, t.local_port), (17, 2, sport), "{t:?}");
        assert_eq!((t.local_addr, t.remote_addr), (LOOPBACK4, LOOPBACK4), "{t:?}");
    }
    let created = events.wait_for("CREATED", |e| is_created(e) && e.cookie == cookie);
    assert_eq!((created.tgid, created.protocol), (std::process::id(), 17));
    // Alternating destinations are still one event per (socket, tuple).
    events.drain_for(Duration::from_millis(300));
    let tuples = events
        .seen
        .iter()
        .filter(|e| is_tuple(e) && e.cookie == cookie)
        .count();
    assert_eq!(tuples, 2, "{:?}", events.seen);
}

/// A connected UDP socket: one event per peer it is connected to, none for
/// its steady traffic, none when it returns to a peer reported before.
#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn sock_events_report_a_connected_udp_socket_once_per_peer() {
    if !require_root() {
        return;
    }
    let mut events = Events::start();
    let sink1 = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind sink");
    let sink2 = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind sink");
    let (p1, p2) = (
        sink1.local_addr().expect("addr").port(),
        sink2.local_addr().expect("addr").port(),
    );
    let sender = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind sender");
    let cookie = socket_cookie(&sender);
    for (port, sends) in [(p1, 20), (p2, 5), (p1, 5)] {
        sender.connect(("127.0.0.1", port)).expect("connect");
        for _ in 0..sends {
            sender.send(b"x").expect("send");
        }
    }
    for port in [p1, p2] {
        let t = events.wait_for("UDP TUPLE", |e| {
            is_tuple(e) && e.cookie == cookie && e.remote_port == port
        });
        assert_eq!((t.protocol, t.family), (17, 2), "{t:?}");
    }
    events.drain_for(Duration::from_millis(300));
    let tuples = events
        .seen
        .iter()
        .filter(|e| is_tuple(e) && e.cookie == cookie)
        .count();
    assert_eq!(tuples, 2, "{:?}", events.seen);
    // The fast path's state: the socket's cookie and its latest tuple.
    let state = events.handle.sock_state(&sender).expect("read SOCK_STATE");
    let state = state.expect("no socket storage for the sender");
    assert_eq!(state.key.cookie, cookie, "{state:?}");
    assert_eq!(state.key.tuple.remote_port, p1, "{state:?}");
    assert_eq!(state.key.tuple.local_addr, LOOPBACK4, "{state:?}");
    // The datagram budget of name captures: spent by the first datagrams.
    assert_eq!(state.datagrams_left, 0, "{state:?}");
    // A TCP socket keeps none (its SYN is reported without state).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let client = std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let tcp_cookie = socket_cookie(&client);
    events.wait_for("TCP TUPLE", |e| is_tuple(e) && e.cookie == tcp_cookie);
    assert_eq!(events.handle.sock_state(&client), Ok(None));
}

#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn sock_events_attribute_a_short_lived_child_process() {
    if !require_root() {
        return;
    }
    let mut events = Events::start();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let script = format!(
        "import socket\n\
         s = socket.create_connection(('127.0.0.1', {port}))\n\
         s.sendall(b'x')\n\
         print(s.getsockname()[1], flush=True)\n\
         s.close()\n"
    );
    let child = std::process::Command::new("python3")
        .args(["-c", &script])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    let pid = child.id();
    let out = child.wait_with_output().expect("python3 output");
    assert!(out.status.success(), "{out:?}");
    let child_port: u16 = String::from_utf8_lossy(&out.stdout).trim().parse().expect("port");
    // The process is gone; the events still name it.
    let tuple = events.wait_for("child TUPLE", |e| {
        is_tuple(e) && e.local_port == child_port && e.remote_port == port
    });
    let created = events.wait_for("child CREATED", |e| is_created(e) && e.cookie == tuple.cookie);
    assert_eq!(created.tgid, pid, "{created:?}");
    assert_eq!(created.comm_bytes(), b"python3", "{created:?}");
    drop(listener);
}

#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn sock_events_stop_when_deliver_says_so_and_detach_on_drop() {
    if !require_root() {
        return;
    }
    let handle = start_sock_events(|_| false).expect("start");
    let _ = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while handle.is_running() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!handle.is_running(), "reader thread still running");
    drop(handle);
    // A second start after the drop works.
    let again = Events::start();
    drop(again);
}

// -----------------------------------------------------------------------
// kprobes and kernel BTF offsets
// -----------------------------------------------------------------------

#[test]
fn kernel_btf_gives_plausible_sock_common_offsets() {
    let btf = KernelBtf::from_sys_fs().expect("kernel BTF");
    // Direct members of sock_common (some inside anonymous unions).
    let family = btf.member_offset("sock_common.skc_family").expect("skc_family");
    let num = btf.member_offset("sock_common.skc_num").expect("skc_num");
    let dport = btf.member_offset("sock_common.skc_dport").expect("skc_dport");
    assert_eq!((family.size, num.size, dport.size), (Some(2), Some(2), Some(2)));
    // Layout since Linux 3.x: addresses (8 bytes), hash (4), then
    // dport/num at 12..16, family at 16.
    assert!(
        family.offset < 64 && num.offset < 64 && dport.offset < 64,
        "{family:?} {num:?} {dport:?}"
    );
    assert_eq!(num.offset, dport.offset + 2, "skc_num follows skc_dport");
    assert!(family.offset > num.offset, "{family:?} {num:?}");
    assert_eq!(family.offset % 2, 0);
    // Nested through `sock.__sk_common` (at offset 0 of struct sock).
    let nested = btf.member_offset("sock.__sk_common.skc_family").expect("nested");
    assert_eq!(nested, family);
    let daddr = btf.member_offset("sock_common.skc_daddr").expect("skc_daddr");
    assert_eq!(daddr.size, Some(4));
    let net = btf
        .member_offset("sock.__sk_common.skc_net.net")
        .expect("skc_net.net");
    assert_eq!(net.size, Some(8));

    let offsets = btf.sock_offsets().expect("sock offsets");
    eprintln!("{offsets:?}");
    assert_eq!(offsets.skc_family, family.offset);
    assert_eq!(offsets.skc_num, num.offset);
    assert_eq!(offsets.skc_dport, dport.offset);
    assert_eq!(offsets.msg_name, 0, "msghdr.msg_name is the first field");
    for (name, value) in [
        ("skc_rcv_saddr", offsets.skc_rcv_saddr),
        ("skc_daddr", offsets.skc_daddr),
        ("msg_namelen", offsets.msg_namelen),
    ] {
        assert_ne!(value, OFFSET_ABSENT, "{name}");
    }
    assert_eq!(kernel_sock_offsets(), Ok(offsets));
}

#[test]
fn a_missing_btf_member_or_struct_is_a_clear_error() {
    let btf = KernelBtf::from_sys_fs().expect("kernel BTF");
    let err = btf
        .member_offset("sock_common.skc_no_such_field")
        .expect_err("no such member");
    assert!(
        err.contains("sock_common has no member skc_no_such_field"),
        "{err}"
    );
    let err = btf
        .member_offset("sock.__sk_common.skc_nope")
        .expect_err("no such nested member");
    assert!(err.contains("sock.__sk_common has no member skc_nope"), "{err}");
    let err = btf
        .member_offset("flowtop_no_such_struct.x")
        .expect_err("no such struct");
    assert!(err.contains("no struct flowtop_no_such_struct"), "{err}");
    let err = btf
        .member_offset("sock_common.skc_family.x")
        .expect_err("not a struct");
    assert!(err.contains("not a struct or union"), "{err}");
}

#[test]
fn garbage_is_not_btf() {
    let err = KernelBtf::parse(vec![0u8; 64]).expect_err("bad magic");
    assert!(err.contains("magic"), "{err}");
    let mut truncated = vec![0x9f, 0xeb, 1, 0, 24, 0, 0, 0];
    truncated.extend_from_slice(&[0, 0, 0, 0, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let err = KernelBtf::parse(truncated).expect_err("sections past the end");
    assert!(err.contains("past the end"), "{err}");
}

/// Built without the toolchain: the kprobe report gives the no-object reason.
#[cfg(flowtop_no_ebpf)]
#[test]
fn without_the_object_the_kprobe_report_explains_how_to_get_it() {
    let report = probe_kprobes();
    assert!(report.programs.is_empty(), "{report:?}");
    let reason = report.reason.clone().expect("reason");
    assert!(reason.contains("built without the eBPF object"), "{reason}");
    assert_eq!(report.chosen, SOCK_PATH_CGROUP);
}

#[cfg(not(flowtop_no_ebpf))]
#[test]
fn the_embedded_object_holds_the_kprobe_programs() {
    let contains = |needle: &[u8]| OBJECT.windows(needle.len()).any(|w| w == needle);
    for (name, function, ret) in KPROBE_PROGRAMS {
        let section = format!("{}/{function}", if ret { "kretprobe" } else { "kprobe" });
        assert!(contains(section.as_bytes()), "no section {section}");
        assert!(contains(name.as_bytes()), "no program {name}");
    }
    assert!(
        contains(GLOBAL_SOCK_OFFSETS.as_bytes()),
        "no global {GLOBAL_SOCK_OFFSETS}"
    );
    assert!(contains(MAP_KPROBE_SEEN.as_bytes()), "no map {MAP_KPROBE_SEEN}");
}

#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn every_kprobe_program_loads_and_the_fallback_is_reported() {
    if !require_root() {
        return;
    }
    let report = probe_kprobes();
    eprintln!("{}", report.summary());
    assert_eq!(report.reason, None, "{report:?}");
    assert!(report.offsets.is_ok(), "{:?}", report.offsets);
    assert_eq!(report.programs.len(), KPROBE_PROGRAMS.len());
    for p in &report.programs {
        assert_eq!(p.loaded, Ok(()), "{} did not pass the verifier", p.program);
    }
    assert!(report.all_loaded());
    if !Path::new("/sys/bus/event_source/devices/kprobe/type").exists() {
        // No CONFIG_KPROBES: nothing attaches, the cgroup path is chosen.
        for p in &report.programs {
            let err = p.attached.clone().expect_err("attached without kprobes?");
            assert!(err.contains("kprobe"), "{}: {err}", p.program);
            assert!(err.contains(&p.attach_point), "{}: {err}", p.program);
        }
        assert!(!report.all_attached());
        assert_eq!(report.chosen, SOCK_PATH_CGROUP);
        let (report2, attachment) = attach_kprobes();
        assert!(attachment.is_none());
        assert_eq!(report2.chosen, SOCK_PATH_CGROUP);
        // The fallback runs the cgroup programs.
        let (report3, handle) = start_sock_events_preferring_kprobes(|_| true);
        assert_eq!(report3.chosen, SOCK_PATH_CGROUP);
        let handle = handle.expect("cgroup fallback");
        assert_eq!(
            handle.programs(),
            [
                "cgroup/sock_create",
                "cgroup/post_bind4",
                "cgroup/post_bind6",
                "cgroup_skb/egress",
                "cgroup_skb/ingress",
                "raw_tp/sched_process_exec",
                "raw_tp/sched_process_fork"
            ]
        );
    } else if report.all_attached() {
        assert_eq!(report.chosen, SOCK_PATH_KPROBES);
    }
    assert!(report.summary().contains("socket ownership path: "));
}

/// Where kprobes attach: a TCP connect and a UDP send are reported with
/// their owner. Skipped (passes) on kernels without kprobes.
#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn kprobe_events_carry_tuple_and_owner_where_kprobes_attach() {
    use flowtop_common::SOCK_EVENT_KPROBE;
    if !require_root() {
        return;
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let (report, handle) = start_sock_events_preferring_kprobes(move |batch| tx.send(batch).is_ok());
    if report.chosen != SOCK_PATH_KPROBES {
        // The skip log counts one line per skip: the report goes to stderr apart.
        eprintln!("{}", report.summary());
        skip("kprobes cannot attach on this kernel: the kprobe events were not checked");
        return;
    }
    let _handle = handle.expect("kprobe handle");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let client = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let client_port = client.local_addr().expect("addr").port();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    udp.send_to(b"x", ("127.0.0.1", port)).expect("send_to");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut seen = Vec::new();
    let found = |seen: &Vec<SockEvent>, proto: u16, rport: u16| {
        seen.iter().any(|e: &SockEvent| {
            e.kind == SOCK_EVENT_KPROBE
                && e.protocol == proto
                && e.remote_port == rport
                && e.tgid == std::process::id()
        })
    };
    while std::time::Instant::now() < deadline && !(found(&seen, 6, port) && found(&seen, 17, port)) {
        if let Ok(batch) = rx.recv_timeout(Duration::from_millis(100)) {
            seen.extend(batch);
        }
    }
    assert!(found(&seen, 6, port), "no TCP connect event: {seen:?}");
    assert!(found(&seen, 17, port), "no UDP send event: {seen:?}");
    assert!(seen
        .iter()
        .any(|e| e.kind == SOCK_EVENT_KPROBE && e.local_port == client_port));
}

// ---------------------------------------------------------------------------
// exec / fork records

#[test]
fn kernel_btf_gives_task_offsets() {
    let Ok(btf) = KernelBtf::from_sys_fs() else {
        skip("no readable kernel BTF");
        return;
    };
    let o = btf.task_offsets().expect("task_struct offsets");
    for (name, v) in [
        ("pid", o.pid),
        ("tgid", o.tgid),
        ("real_parent", o.real_parent),
        ("group_leader", o.group_leader),
        ("comm", o.comm),
        ("mm", o.mm),
        ("start_time", o.start_time),
        ("arg_start", o.arg_start),
        ("arg_end", o.arg_end),
        ("filename", o.filename),
        ("interp", o.interp),
        ("nsproxy", o.nsproxy),
        ("net_ns", o.net_ns),
        ("ns_inum", o.ns_inum),
    ] {
        assert_ne!(v, flowtop_common::OFFSET_ABSENT, "{name} absent: {o:?}");
    }
    // tgid follows pid in every kernel since 2.6.
    assert_eq!(o.tgid, o.pid + 4, "{o:?}");
    assert_eq!(o.arg_end, o.arg_start + 8, "{o:?}");
}

#[test]
fn proc_event_records_decode_by_kind() {
    let fork = flowtop_common::ForkEvent {
        kind: flowtop_common::PROC_EVENT_FORK,
        tgid: 7,
        ppid: 1,
        ..Default::default()
    };
    // SAFETY: ForkEvent is plain integers without padding.
    let bytes = unsafe {
        std::slice::from_raw_parts(
            (&fork as *const flowtop_common::ForkEvent).cast::<u8>(),
            std::mem::size_of_val(&fork),
        )
    };
    assert_eq!(parse_proc_event(bytes), Some(ProcEvent::Fork(fork)));
    assert_eq!(parse_proc_event(&bytes[..20]), None);
    // An exec kind with a fork-sized record is too short.
    let mut short = bytes.to_vec();
    short[..4].copy_from_slice(&flowtop_common::PROC_EVENT_EXEC.to_ne_bytes());
    assert_eq!(parse_proc_event(&short), None);
    assert_eq!(parse_proc_event(&[9, 0, 0, 0]), None);
}

fn cstr(b: &[u8]) -> &[u8] {
    &b[..b.iter().position(|&c| c == 0).unwrap_or(b.len())]
}

/// Both programs load and attach on this kernel, and a short-lived child
/// is described by its fork and exec records after it exited.
#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn exec_and_fork_records_describe_a_short_lived_child() {
    if !require_root() {
        return;
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = attach_sock_events()
        .and_then(|a| {
            assert_eq!(a.exec_unavailable(), None);
            a.start_batch_reader(move |batch| batch.processes.is_empty() || tx.send(batch.processes).is_ok())
        })
        .unwrap_or_else(|e| panic!("attach: {e}"));
    assert!(
        handle.programs().iter().any(|p| p == "raw_tp/sched_process_exec")
            && handle.programs().iter().any(|p| p == "raw_tp/sched_process_fork"),
        "{:?}",
        handle.programs()
    );
    let child = std::process::Command::new("/bin/echo")
        .args(["ft-exec-test", "two words"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("echo");
    let pid = child.id();
    let out = child.wait_with_output().expect("echo");
    assert!(out.status.success());
    let me = std::process::id();
    let my_comm = std::fs::read("/proc/self/comm").expect("comm");
    let my_comm = my_comm.strip_suffix(b"\n").unwrap_or(&my_comm);
    let (mut exec, mut fork) = (None, None);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while (exec.is_none() || fork.is_none()) && std::time::Instant::now() < deadline {
        let Ok(batch) = rx.recv_timeout(Duration::from_millis(200)) else {
            continue;
        };
        for ev in batch {
            match ev {
                ProcEvent::Exec(e) if e.tgid == pid => exec = Some(e),
                ProcEvent::Fork(f) if f.tgid == pid => fork = Some(f),
                _ => {}
            }
        }
    }
    let exec = exec.unwrap_or_else(|| panic!("no exec record; lost {:?}", handle.lost_exec_events()));
    let fork = fork.unwrap_or_else(|| panic!("no fork record; lost {:?}", handle.lost_exec_events()));
    assert_eq!((fork.ppid, cstr(&fork.parent_comm)), (me, my_comm), "{fork:?}");
    assert_ne!(fork.start_ns, 0);
    assert_eq!(&exec.path[..exec.path_len as usize], b"/bin/echo");
    assert_eq!(
        &exec.args[..exec.args_len as usize],
        b"/bin/echo\0ft-exec-test\0two words\0"
    );
    assert_eq!((exec.ppid, cstr(&exec.parent_comm)), (me, my_comm));
    assert_eq!(cstr(&exec.comm), b"echo");
    assert_eq!(exec.start_ns, fork.start_ns, "the same process");
    assert_eq!(handle.lost_exec_events(), Ok(0));
}
