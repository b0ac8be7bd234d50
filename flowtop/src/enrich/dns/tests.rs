//! Lookups against the in-process PTR server on 127.0.0.1.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use super::*;
use crate::flow::model::proto;
use crate::output::safe::terminal_safe;
use flowtop_testkit::dns::{Mode, PtrServer, ServerConfig};

/// Longest wait for a delivery that should come (a sanity bound, not a
/// speed check).
const WAIT: Duration = Duration::from_secs(10);

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

async fn server(ptr: &[(&str, &str)], ttl: u32, mode: Mode, delay: Duration) -> PtrServer {
    let cfg = ServerConfig {
        ptr: ptr
            .iter()
            .map(|(a, n)| (ip(a), (*n).to_owned()))
            .collect::<HashMap<_, _>>(),
        ttl,
        mode,
        delay,
    };
    PtrServer::start("127.0.0.1:0".parse().expect("addr"), cfg)
        .await
        .expect("bind test server")
}

fn resolver(cfg: DnsConfig, srv: &PtrServer) -> (ReverseDns, UnboundedReceiver<(IpAddr, Lookup)>) {
    let (tx, rx) = unbounded_channel();
    let dns = ReverseDns::start_with_servers(cfg, &[srv.local_addr()], move |ip, l| {
        let _ = tx.send((ip, l));
    })
    .expect("start resolver");
    (dns, rx)
}

async fn delivered(rx: &mut UnboundedReceiver<(IpAddr, Lookup)>) -> (IpAddr, Lookup) {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("a lookup should finish")
        .expect("channel open")
}

fn name(s: &str) -> Lookup {
    Lookup::Name(Arc::from(s))
}

#[tokio::test]
async fn name_arrives_via_deliver_then_comes_from_the_cache() {
    let srv = server(
        &[("192.0.2.10", "host.example.")],
        300,
        Mode::Answer,
        Duration::ZERO,
    )
    .await;
    let (dns, mut rx) = resolver(DnsConfig::default(), &srv);
    let a = ip("192.0.2.10");
    assert_eq!(dns.cached(a), Lookup::Pending);
    assert_eq!(dns.request(a), Lookup::Pending);
    // Asking again while in flight starts nothing new.
    assert_eq!(dns.request(a), Lookup::Pending);
    assert_eq!(delivered(&mut rx).await, (a, name("host.example")));
    for _ in 0..10 {
        assert_eq!(dns.request(a), name("host.example"));
    }
    assert_eq!(dns.cached(a), name("host.example"));
    assert_eq!(srv.queries(), 1, "cache hits must not query the server");
    let st = dns.stats();
    assert_eq!(
        (st.started, st.answered, st.cache_size, st.in_flight),
        (1, 1, 1, 0)
    );
}

#[tokio::test]
async fn ipv6_addresses_are_looked_up_under_ip6_arpa() {
    let srv = server(
        &[("2001:db8::5", "six.example")],
        300,
        Mode::Answer,
        Duration::ZERO,
    )
    .await;
    let (dns, mut rx) = resolver(DnsConfig::default(), &srv);
    let a = ip("2001:db8::5");
    assert_eq!(dns.request(a), Lookup::Pending);
    assert_eq!(delivered(&mut rx).await, (a, name("six.example")));
}

#[tokio::test]
async fn no_name_is_cached_too() {
    let srv = server(&[], 300, Mode::Answer, Duration::ZERO).await;
    let (dns, mut rx) = resolver(DnsConfig::default(), &srv);
    let a = ip("192.0.2.11");
    assert_eq!(dns.request(a), Lookup::Pending);
    assert_eq!(delivered(&mut rx).await, (a, Lookup::NoName));
    assert_eq!(dns.request(a), Lookup::NoName);
    assert_eq!(srv.queries(), 1);
    assert_eq!(dns.stats().no_name, 1);
}

#[tokio::test]
async fn negative_answers_expire_after_negative_ttl() {
    let srv = server(&[], 300, Mode::Answer, Duration::ZERO).await;
    let cfg = DnsConfig {
        negative_ttl: Duration::from_millis(100),
        ..DnsConfig::default()
    };
    let (dns, mut rx) = resolver(cfg, &srv);
    let a = ip("192.0.2.12");
    dns.request(a);
    delivered(&mut rx).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Expired: still shown, and asked again.
    assert_eq!(dns.request(a), Lookup::NoName);
    delivered(&mut rx).await;
    assert_eq!(srv.queries(), 2);
}

#[tokio::test]
async fn a_short_ttl_is_raised_to_the_minimum() {
    let srv = server(
        &[("192.0.2.13", "short.example")],
        0,
        Mode::Answer,
        Duration::ZERO,
    )
    .await;
    let cfg = DnsConfig {
        positive_ttl_min: Duration::from_secs(60),
        ..DnsConfig::default()
    };
    let (dns, mut rx) = resolver(cfg, &srv);
    let a = ip("192.0.2.13");
    dns.request(a);
    delivered(&mut rx).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Unclamped, TTL 0 would have expired already and queried again.
    assert_eq!(dns.request(a), name("short.example"));
    assert_eq!(dns.stats().started, 1);
    assert_eq!(srv.queries(), 1);
}

#[tokio::test]
async fn a_long_ttl_is_cut_to_the_maximum() {
    let srv = server(
        &[("192.0.2.14", "long.example")],
        86_400,
        Mode::Answer,
        Duration::ZERO,
    )
    .await;
    let cfg = DnsConfig {
        positive_ttl_min: Duration::ZERO,
        positive_ttl_max: Duration::from_millis(100),
        ..DnsConfig::default()
    };
    let (dns, mut rx) = resolver(cfg, &srv);
    let a = ip("192.0.2.14");
    dns.request(a);
    delivered(&mut rx).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Expired after the cap: the stale name is shown while it is refreshed.
    assert_eq!(dns.request(a), name("long.example"));
    assert_eq!(delivered(&mut rx).await, (a, name("long.example")));
    assert_eq!(srv.queries(), 2);
}

#[test]
fn clamp_never_panics_on_inverted_bounds() {
    let cfg = DnsConfig {
        positive_ttl_min: Duration::from_secs(100),
        positive_ttl_max: Duration::from_secs(10),
        ..DnsConfig::default()
    };
    assert_eq!(clamp_ttl(&cfg, 5), Duration::from_secs(10));
    assert_eq!(clamp_ttl(&cfg, u32::MAX), Duration::from_secs(10));
    assert_eq!(clamp_ttl(&DnsConfig::default(), 600), Duration::from_secs(600));
}

#[tokio::test]
async fn a_silent_server_times_out_within_the_configured_timeout() {
    let srv = server(&[], 300, Mode::Silent, Duration::ZERO).await;
    let timeout = Duration::from_millis(300);
    let cfg = DnsConfig {
        timeout,
        ..DnsConfig::default()
    };
    let (dns, mut rx) = resolver(cfg, &srv);
    let a = ip("192.0.2.15");
    let t0 = Instant::now();
    assert_eq!(dns.request(a), Lookup::Pending);
    assert_eq!(delivered(&mut rx).await, (a, Lookup::NoName));
    // Sanity only: the bound is the timeout, nowhere near hickory's 5 s.
    assert!(t0.elapsed() < timeout * 10, "took {:?}", t0.elapsed());
    assert!(srv.queries() >= 1);
    let st = dns.stats();
    assert_eq!((st.timed_out, st.in_flight), (1, 0));
    assert_eq!(dns.request(a), Lookup::NoName, "a time-out is cached as no name");
}

#[tokio::test]
async fn a_silent_server_never_blocks_request_and_the_queue_is_bounded() {
    let srv = server(&[], 300, Mode::Silent, Duration::ZERO).await;
    let cfg = DnsConfig {
        max_in_flight: 2,
        timeout: Duration::from_secs(30),
        ..DnsConfig::default()
    };
    let (dns, _rx) = resolver(cfg, &srv);
    for n in 0..100u8 {
        assert_eq!(dns.request(IpAddr::from([198, 51, 100, n])), Lookup::Pending);
    }
    let st = dns.stats();
    // 2 running, 16 × 2 queued, the rest dropped (and asked again later).
    assert_eq!((st.in_flight, st.queued, st.dropped, st.started), (2, 32, 66, 2));
}

#[tokio::test]
async fn no_more_than_max_in_flight_queries_at_once() {
    let srv = server(&[], 300, Mode::Answer, Duration::from_millis(150)).await;
    let cfg = DnsConfig {
        max_in_flight: 3,
        ..DnsConfig::default()
    };
    let (dns, mut rx) = resolver(cfg, &srv);
    for n in 0..12u8 {
        dns.request(IpAddr::from([198, 51, 100, n]));
    }
    let st = dns.stats();
    assert_eq!((st.in_flight, st.queued), (3, 9));
    for _ in 0..12 {
        assert_eq!(delivered(&mut rx).await.1, Lookup::NoName);
    }
    assert_eq!(srv.queries(), 12);
    let most = srv.max_concurrent();
    assert!((2..=3).contains(&most), "server saw {most} concurrent queries");
    let st = dns.stats();
    assert_eq!((st.started, st.no_name, st.in_flight, st.queued), (12, 12, 0, 0));
}

#[tokio::test]
async fn sixty_four_lookups_in_flight_all_go_out() {
    // hickory answers "busy" past `max_active_requests` (32 by default) on
    // a multiplexed connection; over UDP each query has its own socket, and
    // all 64 of the default bound must reach the server at once.
    let srv = server(&[], 300, Mode::Answer, Duration::from_millis(100)).await;
    let (dns, mut rx) = resolver(DnsConfig::default(), &srv);
    for n in 0..200u16 {
        let [hi, lo] = n.to_be_bytes();
        dns.request(IpAddr::from([198, 51, hi, lo]));
    }
    assert_eq!(dns.stats().in_flight, 64);
    for _ in 0..200 {
        assert_eq!(delivered(&mut rx).await.1, Lookup::NoName);
    }
    let st = dns.stats();
    assert_eq!(
        (st.no_name, st.failed, st.timed_out, st.dropped),
        (200, 0, 0, 0),
        "{st:?}"
    );
    assert!(srv.max_concurrent() > 32, "only {} at once", srv.max_concurrent());
}

#[tokio::test]
async fn malformed_answers_give_no_name() {
    let srv = server(&[("192.0.2.16", "x.example")], 300, Mode::Garbage, Duration::ZERO).await;
    let cfg = DnsConfig {
        timeout: Duration::from_millis(500),
        ..DnsConfig::default()
    };
    let (dns, mut rx) = resolver(cfg, &srv);
    dns.request(ip("192.0.2.16"));
    assert_eq!(delivered(&mut rx).await.1, Lookup::NoName);
    assert!(srv.queries() >= 1);
    // hickory rejects the undecodable reply at once: a failure, not a wait.
    assert_eq!(dns.stats().failed, 1, "{:?}", dns.stats());
}

#[tokio::test]
async fn an_answer_of_the_wrong_type_gives_no_name() {
    let srv = server(
        &[("192.0.2.17", "x.example")],
        300,
        Mode::WrongType,
        Duration::ZERO,
    )
    .await;
    let (dns, mut rx) = resolver(DnsConfig::default(), &srv);
    dns.request(ip("192.0.2.17"));
    assert_eq!(delivered(&mut rx).await.1, Lookup::NoName);
    assert_eq!(dns.stats().answered, 0);
}

#[tokio::test]
async fn a_hostile_name_arrives_raw_and_the_output_layer_escapes_it() {
    let srv = server(
        &[("192.0.2.66", "evil\u{1b}[2J\u{1b}]0;owned\u{7}.example")],
        300,
        Mode::Answer,
        Duration::ZERO,
    )
    .await;
    let (dns, mut rx) = resolver(DnsConfig::default(), &srv);
    dns.request(ip("192.0.2.66"));
    let (_, got) = delivered(&mut rx).await;
    let Lookup::Name(n) = got else {
        panic!("expected a name, got {got:?}");
    };
    assert_eq!(&*n, "evil\u{1b}[2J\u{1b}]0;owned\u{7}.example");
    assert_eq!(terminal_safe(&n), "evil\\x1b[2J\\x1b]0;owned\\x07.example");
}

#[tokio::test]
async fn own_query_sockets_are_recognised() {
    let srv = server(&[("192.0.2.18", "me.example")], 300, Mode::Answer, Duration::ZERO).await;
    let (dns, mut rx) = resolver(DnsConfig::default(), &srv);
    dns.request(ip("192.0.2.18"));
    delivered(&mut rx).await;
    let peers = srv.peers();
    let &peer = peers.first().expect("the server saw the query");
    let server_addr = srv.local_addr();
    // The conntrack original tuple of that query: (peer -> server).
    assert!(dns.is_own_query(proto::UDP, peer, server_addr));
    let other_port = SocketAddr::new(peer.ip(), peer.port().wrapping_add(1));
    assert!(!dns.is_own_query(proto::UDP, other_port, server_addr));
    assert!(!dns.is_own_query(proto::TCP, peer, server_addr));
    let other_server = SocketAddr::new(server_addr.ip(), server_addr.port().wrapping_add(1));
    assert!(!dns.is_own_query(proto::UDP, peer, other_server));
    // The socket is closed after the answer, and still recognised.
    assert!(dns
        .own_sockets()
        .iter()
        .any(|&(p, l, r, open)| { p == proto::UDP && l.port() == peer.port() && r == server_addr && !open }));
}

#[tokio::test]
async fn hosts_file_names_come_first_without_a_query() {
    let srv = server(
        &[("192.0.2.5", "from-dns.example")],
        300,
        Mode::Answer,
        Duration::ZERO,
    )
    .await;
    let hosts = name::parse_hosts("192.0.2.5 router.lan router\n");
    let dns = ReverseDns::start_inner(
        DnsConfig::default(),
        servers_config(&[srv.local_addr()]),
        ResolverOpts::default(),
        hosts,
        Box::new(|_, _| {}),
    )
    .expect("start");
    assert_eq!(dns.request(ip("192.0.2.5")), name("router.lan"));
    assert_eq!(dns.cached(ip("192.0.2.5")), name("router.lan"));
    assert_eq!(srv.queries(), 0);
}

#[tokio::test]
async fn the_cache_is_bounded() {
    let srv = server(&[], 300, Mode::Answer, Duration::ZERO).await;
    let cfg = DnsConfig {
        max_entries: 2,
        ..DnsConfig::default()
    };
    let (dns, mut rx) = resolver(cfg, &srv);
    for n in 1..=3u8 {
        dns.request(IpAddr::from([192, 0, 2, n]));
        delivered(&mut rx).await;
    }
    assert_eq!(dns.stats().cache_size, 2);
    // The oldest went first.
    assert_eq!(dns.cached(IpAddr::from([192, 0, 2, 1])), Lookup::Pending);
    assert_eq!(dns.cached(IpAddr::from([192, 0, 2, 3])), Lookup::NoName);
}

#[test]
fn starting_outside_a_runtime_is_an_error() {
    let addr: SocketAddr = "127.0.0.1:53".parse().expect("addr");
    let r = ReverseDns::start_with_servers(DnsConfig::default(), &[addr], |_, _| {});
    assert!(matches!(r, Err(DnsError::NoRuntime)));
}

#[test]
fn reverse_names_are_fully_qualified() {
    assert_eq!(
        reverse_name(ip("192.0.2.1")).to_ascii(),
        "1.2.0.192.in-addr.arpa."
    );
    assert!(reverse_name(ip("2001:db8::1")).to_ascii().ends_with(".ip6.arpa."));
}
