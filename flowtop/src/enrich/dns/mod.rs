//! Reverse DNS: host names for flow addresses, looked up without ever
//! blocking the caller.
//!
//! [`ReverseDns::request`] answers from the cache or queues a PTR lookup and
//! returns [`Lookup::Pending`]; the finished lookup is handed to the `deliver`
//! callback from a tokio task. At most `max_in_flight` lookups run at once,
//! more wait in a bounded FIFO, and past that requests are dropped (the
//! caller asks again on its next refresh). Every lookup ends within
//! `timeout`. Answers are cached with the PTR record's TTL clamped to
//! `positive_ttl_min..=positive_ttl_max`; "no name" (NXDOMAIN, no PTR record,
//! SERVFAIL, a malformed answer, a time-out) for `negative_ttl`. An expired
//! entry is still returned while its refresh runs, so a shown name does not
//! flicker back to "pending".
//!
//! Sources, in the order glibc's default `hosts: files dns` uses:
//! 1. the hosts file (`/etc/hosts`, read once at start): the first name of
//!    the first line with the address, as `getent hosts ADDR` prints it. We
//!    parse it ourselves instead of letting hickory consult it: hickory
//!    answers a reverse query from every name of every matching line in hash
//!    order, so which name shows would change from run to run;
//! 2. the name servers of `/etc/resolv.conf` (under `ip netns exec NS` that
//!    is `/etc/netns/NS/resolv.conf`, bind-mounted by `ip`).
//!
//! Private, loopback and link-local addresses are looked up like any other:
//! a LAN's own DNS server (or the hosts file) often knows them.
//!
//! flowtop's own queries would show up as flows to port 53; the resolver's
//! sockets are created through [`own::OwnRuntime`], which records them, and
//! [`ReverseDns::is_own_query`] recognises their conntrack tuples.

mod cache;
mod name;
mod own;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::{DnsError as HickoryDnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use hickory_resolver::Resolver;

use cache::{Answer, Cache};
use own::{OwnRuntime, OwnSockets};

/// Where the system resolver configuration is read from.
const RESOLV_CONF: &str = "/etc/resolv.conf";
/// Where the hosts file is read from.
const HOSTS: &str = "/etc/hosts";

/// Tuning of the reverse resolver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    /// Longest one lookup may take, retries included.
    pub timeout: Duration,
    /// Most lookups running at once (0 counts as 1). Requests beyond wait in
    /// a FIFO of `16 × max_in_flight` entries; beyond that they are dropped.
    /// With several name servers hickory may ask two of them in parallel, so
    /// sockets in flight can be up to twice this.
    pub max_in_flight: usize,
    /// Bounds applied to the PTR record's TTL.
    pub positive_ttl_min: Duration,
    pub positive_ttl_max: Duration,
    /// How long "no name" (NXDOMAIN, no PTR, SERVFAIL, time-out) is kept.
    pub negative_ttl: Duration,
    /// Most cached answers; the oldest goes first.
    pub max_entries: usize,
}

impl Default for DnsConfig {
    fn default() -> DnsConfig {
        DnsConfig {
            timeout: Duration::from_secs(2),
            max_in_flight: 64,
            positive_ttl_min: Duration::from_secs(60),
            positive_ttl_max: Duration::from_secs(3600),
            negative_ttl: Duration::from_secs(300),
            max_entries: 100_000,
        }
    }
}

/// What is known of an address's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Not known yet: in flight, queued, or (from [`ReverseDns::cached`])
    /// never asked.
    Pending,
    /// The name, raw: it may hold control characters (escape it for a
    /// terminal with `output::safe`). Valid UTF-8, at most 253 bytes unless
    /// invalid bytes were replaced, no trailing dot.
    Name(Arc<str>),
    /// The address has no name, or the lookup failed.
    NoName,
}

impl From<Answer> for Lookup {
    fn from(a: Answer) -> Lookup {
        match a {
            Answer::Name(n) => Lookup::Name(n),
            Answer::NoName => Lookup::NoName,
        }
    }
}

/// Counters for the stats line and benchmarks. Every started lookup ends as
/// exactly one of answered / no_name / failed / timed_out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct DnsStats {
    /// Lookups sent to the resolver.
    pub started: u64,
    /// Lookups that found a name.
    pub answered: u64,
    /// Lookups answered with NXDOMAIN or without a PTR record.
    pub no_name: u64,
    /// Lookups that failed otherwise: SERVFAIL, REFUSED, malformed answers,
    /// unusable names, network errors.
    pub failed: u64,
    /// Lookups that ran out of time.
    pub timed_out: u64,
    /// Requests dropped because the queue was full.
    pub dropped: u64,
    /// Answers cached now.
    pub cache_size: usize,
    /// Lookups running now.
    pub in_flight: usize,
    /// Requests waiting for a lookup slot now.
    pub queued: usize,
}

/// Why the resolver could not start.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("reverse DNS needs a tokio runtime")]
    NoRuntime,
    #[error("cannot read {path}: {source}")]
    ReadConfig {
        path: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot use {path}: {reason}")]
    Config { path: &'static str, reason: String },
    #[error("no name servers configured")]
    NoServers,
    #[error("cannot set up the resolver: {0}")]
    Resolver(String),
}

/// The reverse resolver; cheap to clone (all clones share one cache).
#[derive(Clone)]
pub struct ReverseDns {
    inner: Arc<Inner>,
}

type Deliver = Box<dyn Fn(IpAddr, Lookup) + Send + Sync>;

struct Inner {
    cfg: DnsConfig,
    resolver: Resolver<OwnRuntime>,
    sockets: OwnSockets,
    hosts: HashMap<IpAddr, Arc<str>>,
    runtime: tokio::runtime::Handle,
    state: Mutex<State>,
    counters: Counters,
    deliver: Deliver,
}

#[derive(Default)]
struct Counters {
    started: AtomicU64,
    answered: AtomicU64,
    no_name: AtomicU64,
    failed: AtomicU64,
    timed_out: AtomicU64,
    dropped: AtomicU64,
}

struct State {
    cache: Cache,
    /// Addresses in flight or queued (never both twice).
    pending: HashSet<IpAddr, foldhash::fast::RandomState>,
    queue: VecDeque<IpAddr>,
    in_flight: usize,
}

/// How one lookup ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Answered,
    NoName,
    Failed,
    TimedOut,
}

impl ReverseDns {
    /// Reads the system resolver configuration (`/etc/resolv.conf`, so
    /// `ip netns exec NS` with `/etc/netns/NS/resolv.conf` works) and
    /// `/etc/hosts`. Must be called inside a tokio runtime. `deliver` is
    /// called (from a tokio task) with each finished lookup.
    pub fn start(
        cfg: DnsConfig,
        deliver: impl Fn(IpAddr, Lookup) + Send + Sync + 'static,
    ) -> Result<ReverseDns, DnsError> {
        let text = std::fs::read(RESOLV_CONF).map_err(|source| DnsError::ReadConfig {
            path: RESOLV_CONF,
            source,
        })?;
        let (config, opts) =
            hickory_resolver::system_conf::parse_resolv_conf(text).map_err(|e| DnsError::Config {
                path: RESOLV_CONF,
                reason: e.to_string(),
            })?;
        // A missing or unreadable hosts file is not an error (glibc agrees).
        let hosts = std::fs::read(HOSTS)
            .map(|b| name::parse_hosts(&String::from_utf8_lossy(&b)))
            .unwrap_or_default();
        Self::start_inner(cfg, config, opts, hosts, Box::new(deliver))
    }

    /// Same with explicit name servers (for tests: an in-process server on
    /// 127.0.0.1:PORT), UDP with TCP for truncated answers, and no hosts file.
    pub fn start_with_servers(
        cfg: DnsConfig,
        servers: &[SocketAddr],
        deliver: impl Fn(IpAddr, Lookup) + Send + Sync + 'static,
    ) -> Result<ReverseDns, DnsError> {
        let config = servers_config(servers);
        Self::start_inner(
            cfg,
            config,
            ResolverOpts::default(),
            HashMap::new(),
            Box::new(deliver),
        )
    }

    fn start_inner(
        cfg: DnsConfig,
        config: ResolverConfig,
        mut opts: ResolverOpts,
        hosts: HashMap<IpAddr, Arc<str>>,
        deliver: Deliver,
    ) -> Result<ReverseDns, DnsError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| DnsError::NoRuntime)?;
        if config.name_servers().is_empty() {
            return Err(DnsError::NoServers);
        }
        // Ours is the one cache (with its own bound and TTL rules), hosts are
        // read by us (see the module comment), and hickory must give up no
        // later than we do, so its sockets close when our lookup ends. Its
        // per-connection request limit (32) would make a TCP connection
        // refuse part of our in-flight lookups as "busy".
        opts.cache_size = 0;
        opts.use_hosts_file = ResolveHosts::Never;
        opts.timeout = opts.timeout.min(cfg.timeout);
        opts.max_active_requests = opts.max_active_requests.max(cfg.max_in_flight);
        let provider = OwnRuntime::default();
        let sockets = provider.sockets.clone();
        let resolver = Resolver::builder_with_config(config, provider)
            .with_options(opts)
            .build()
            .map_err(|e| DnsError::Resolver(e.to_string()))?;
        let state = State {
            cache: Cache::new(cfg.max_entries),
            pending: HashSet::default(),
            queue: VecDeque::new(),
            in_flight: 0,
        };
        Ok(ReverseDns {
            inner: Arc::new(Inner {
                cfg,
                resolver,
                sockets,
                hosts,
                runtime,
                state: Mutex::new(state),
                counters: Counters::default(),
                deliver,
            }),
        })
    }

    /// Never blocks, never awaits: a cached answer is returned (an expired
    /// one too, while a refresh is started); an address being looked up
    /// gives `Pending`; otherwise a lookup is started or queued and `Pending`
    /// returned. With the queue full the request is dropped (still
    /// `Pending`): ask again later.
    pub fn request(&self, ip: IpAddr) -> Lookup {
        if let Some(name) = self.inner.hosts.get(&ip) {
            return Lookup::Name(Arc::clone(name));
        }
        let mut st = self.inner.lock();
        let hit = st.cache.get(ip, Instant::now());
        if let Some(hit) = &hit {
            if hit.fresh {
                return hit.answer.clone().into();
            }
        }
        if !st.pending.contains(&ip) {
            Inner::submit(&self.inner, &mut st, ip);
        }
        hit.map_or(Lookup::Pending, |h| h.answer.into())
    }

    /// What is known without starting anything: the cached answer (expired
    /// or not), else `Pending`.
    pub fn cached(&self, ip: IpAddr) -> Lookup {
        if let Some(name) = self.inner.hosts.get(&ip) {
            return Lookup::Name(Arc::clone(name));
        }
        let st = self.inner.lock();
        st.cache
            .get(ip, Instant::now())
            .map_or(Lookup::Pending, |h| h.answer.into())
    }

    /// Counters and current sizes.
    pub fn stats(&self) -> DnsStats {
        let c = &self.inner.counters;
        let st = self.inner.lock();
        DnsStats {
            started: c.started.load(Ordering::Relaxed),
            answered: c.answered.load(Ordering::Relaxed),
            no_name: c.no_name.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            timed_out: c.timed_out.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            cache_size: st.cache.len(),
            in_flight: st.in_flight,
            queued: st.queue.len(),
        }
    }

    /// Whether (proto, local, remote) is one of flowtop's own resolver
    /// sockets, open or closed in the last 5 minutes. For a flow, pass the
    /// conntrack original tuple: local = (src, sport), remote = (dst, dport).
    pub fn is_own_query(&self, proto: u8, local: SocketAddr, remote: SocketAddr) -> bool {
        self.inner.sockets.contains(proto, local, remote)
    }

    /// The resolver sockets remembered: (proto, local as bound, server,
    /// open). For diagnostics and tests.
    #[doc(hidden)]
    pub fn own_sockets(&self) -> Vec<(u8, SocketAddr, SocketAddr, bool)> {
        self.inner.sockets.list()
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent across a panic in `deliver` (it is
        // called without the lock), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn queue_cap(&self) -> usize {
        self.cfg.max_in_flight.max(1).saturating_mul(16)
    }

    /// Starts a lookup for `ip` now, or queues it, or drops it.
    fn submit(this: &Arc<Inner>, st: &mut State, ip: IpAddr) {
        if st.in_flight < this.cfg.max_in_flight.max(1) {
            st.pending.insert(ip);
            st.in_flight += 1;
            Inner::spawn(this, ip);
        } else if st.queue.len() < this.queue_cap() {
            st.pending.insert(ip);
            st.queue.push_back(ip);
        } else {
            this.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn spawn(this: &Arc<Inner>, ip: IpAddr) {
        this.counters.started.fetch_add(1, Ordering::Relaxed);
        let inner = Arc::clone(this);
        this.runtime.spawn(async move {
            let (answer, ttl) = inner.resolve(ip).await;
            inner.finish(ip, answer.clone(), ttl);
            (inner.deliver)(ip, answer.into());
        });
    }

    /// Caches the answer and starts queued lookups in the freed slot.
    fn finish(self: &Arc<Inner>, ip: IpAddr, answer: Answer, ttl: Duration) {
        let mut st = self.lock();
        let now = Instant::now();
        st.cache.insert(ip, answer, now.checked_add(ttl).unwrap_or(now));
        st.pending.remove(&ip);
        st.in_flight = st.in_flight.saturating_sub(1);
        while st.in_flight < self.cfg.max_in_flight.max(1) {
            let Some(next) = st.queue.pop_front() else {
                break;
            };
            st.in_flight += 1;
            Inner::spawn(self, next);
        }
    }

    /// One PTR lookup, bounded by the time-out; never fails.
    async fn resolve(&self, ip: IpAddr) -> (Answer, Duration) {
        let lookup = self.resolver.lookup(reverse_name(ip), RecordType::PTR);
        let (outcome, found) = match tokio::time::timeout(self.cfg.timeout, lookup).await {
            Err(_) => (Outcome::TimedOut, None),
            Ok(Err(e)) => (classify(&e), None),
            Ok(Ok(lookup)) => {
                // The first PTR whose target is usable; CNAMEs (RFC 2317
                // delegation) and records of other types are skipped.
                let found = lookup.answers().iter().find_map(|r| match &r.data {
                    RData::PTR(ptr) => name::ptr_text(&ptr.0).map(|n| (n, r.ttl)),
                    _ => None,
                });
                let has_ptr = lookup.answers().iter().any(|r| matches!(r.data, RData::PTR(_)));
                match (&found, has_ptr) {
                    (Some(_), _) => (Outcome::Answered, found),
                    (None, true) => (Outcome::Failed, None),
                    (None, false) => (Outcome::NoName, None),
                }
            }
        };
        let c = &self.counters;
        match outcome {
            Outcome::Answered => &c.answered,
            Outcome::NoName => &c.no_name,
            Outcome::Failed => &c.failed,
            Outcome::TimedOut => &c.timed_out,
        }
        .fetch_add(1, Ordering::Relaxed);
        match found {
            Some((name, ttl)) => (Answer::Name(name), clamp_ttl(&self.cfg, ttl)),
            None => (Answer::NoName, self.cfg.negative_ttl),
        }
    }
}

/// The PTR record's TTL within the configured bounds (a min above the max
/// is taken as the max, rather than panicking in `clamp`).
fn clamp_ttl(cfg: &DnsConfig, ttl: u32) -> Duration {
    let max = cfg.positive_ttl_max;
    Duration::from_secs(u64::from(ttl))
        .max(cfg.positive_ttl_min.min(max))
        .min(max)
}

/// `4.3.2.1.in-addr.arpa.` / nibbles under `ip6.arpa.`, fully qualified so
/// no search domain is appended.
fn reverse_name(ip: IpAddr) -> Name {
    let mut name = Name::from(ip);
    name.set_fqdn(true);
    name
}

fn classify(e: &NetError) -> Outcome {
    match e {
        NetError::Timeout => Outcome::TimedOut,
        NetError::Dns(HickoryDnsError::NoRecordsFound(nr))
            if matches!(nr.response_code, ResponseCode::NXDomain | ResponseCode::NoError) =>
        {
            Outcome::NoName
        }
        _ => Outcome::Failed,
    }
}

/// Name servers given as socket addresses: UDP, and TCP on the same port for
/// answers too large for UDP.
fn servers_config(servers: &[SocketAddr]) -> ResolverConfig {
    let with_port = |mut c: ConnectionConfig, port| {
        c.port = port;
        c
    };
    ResolverConfig::from_name_servers(
        servers
            .iter()
            .map(|s| {
                NameServerConfig::new(
                    s.ip(),
                    true,
                    vec![
                        with_port(ConnectionConfig::udp(), s.port()),
                        with_port(ConnectionConfig::tcp(), s.port()),
                    ],
                )
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests;
