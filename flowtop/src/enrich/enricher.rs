//! The enricher: fills the address book for the flows the engine sees.
//!
//! Geography is looked up at first sight, synchronously (a memory-mapped
//! database and a cache: well under a microsecond). Names are asked of the
//! reverse resolver, which answers at once from its cache or later through
//! [`Enricher::name_sink`]; nothing here ever waits on the network.
//!
//! The two sources are traits so the engine's use of them is tested with
//! fakes, and so flowtop runs with either, both or neither.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use super::book::{AddressBook, NameState};
use crate::flow::model::{proto, Flow};

/// Geography of one address. `scope` labels the addresses that have none
/// ("private", "loopback", ...); public addresses have `scope: None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GeoAnswer {
    pub scope: Option<&'static str>,
    pub country: Option<Arc<str>>,
    pub city: Option<Arc<str>>,
}

/// A source of geography (GeoIP databases behind a cache).
pub trait GeoLookup: Send {
    fn lookup(&mut self, ip: IpAddr) -> GeoAnswer;
    /// Picks up a database replaced on disk; returns notices to print.
    fn refresh(&mut self) -> Vec<String> {
        Vec::new()
    }
}

/// A reverse resolver that never blocks.
pub trait NameLookup: Send + Sync {
    /// The cached answer, or `Pending` after queueing a lookup.
    fn request(&self, ip: IpAddr) -> NameState;
    /// Whether this conntrack tuple is one of the resolver's own queries.
    fn is_own_query(&self, proto: u8, local: SocketAddr, remote: SocketAddr) -> bool;
}

/// Addresses whose name arrived since the engine last looked: the engine
/// turns them into `update` events for the flows that use them.
#[derive(Debug, Default)]
pub struct NamesArrived {
    ips: Mutex<Vec<IpAddr>>,
}

impl NamesArrived {
    pub fn push(&self, ip: IpAddr) {
        self.ips.lock().unwrap_or_else(|p| p.into_inner()).push(ip);
    }

    pub fn take(&self) -> Vec<IpAddr> {
        std::mem::take(&mut *self.ips.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Recognises flowtop's own DNS queries, hidden from every output: they are
/// flowtop's doing, not the machine's.
#[derive(Clone, Default)]
pub struct OwnQueries(Option<Arc<dyn NameLookup>>);

impl OwnQueries {
    /// Cheap for every flow that is not a UDP/TCP flow to port 53.
    pub fn contains(&self, f: &Flow) -> bool {
        let Some(names) = &self.0 else {
            return false;
        };
        if !(f.proto == proto::UDP || f.proto == proto::TCP) {
            return false;
        }
        let (Some(sport), Some(dport @ 53)) = (f.orig.sport, f.orig.dport) else {
            return false;
        };
        names.is_own_query(
            f.proto,
            SocketAddr::new(f.orig.src, sport),
            SocketAddr::new(f.orig.dst, dport),
        )
    }
}

pub struct Enricher {
    book: Arc<AddressBook>,
    geo: Option<Box<dyn GeoLookup>>,
    names: Option<Arc<dyn NameLookup>>,
    arrived: Arc<NamesArrived>,
    /// Where the resolver's tasks run; lives as long as the resolver is used.
    dns_runtime: Option<super::start::DnsRuntime>,
    /// While the initial table loads, addresses are marked pending but not
    /// yet asked: on a small machine thousands of lookups, their answers and
    /// the name server would take the cores the table is loading on.
    defer_names: bool,
    /// Payloads may be looked at for asked-for names (not `--no-inspect`).
    inspect: bool,
}

impl Enricher {
    pub fn new(
        book: Arc<AddressBook>,
        geo: Option<Box<dyn GeoLookup>>,
        names: Option<Arc<dyn NameLookup>>,
    ) -> Enricher {
        Enricher {
            book,
            geo,
            names,
            arrived: Arc::default(),
            dns_runtime: None,
            defer_names: false,
            inspect: true,
        }
    }

    /// `--no-inspect` turns it off: the engine then keeps no name tracker.
    pub fn set_inspect(&mut self, inspect: bool) {
        self.inspect = inspect;
    }

    /// Whether asked-for names are gathered.
    pub fn inspect(&self) -> bool {
        self.inspect
    }

    /// Adds the reverse resolver (started after the enricher, because its
    /// answers go to the enricher's book and arrival list).
    pub fn set_names(&mut self, names: Arc<dyn NameLookup>, runtime: super::start::DnsRuntime) {
        self.names = Some(names);
        self.dns_runtime = Some(runtime);
    }

    /// Holds reverse lookups back (addresses are marked pending) until
    /// [`Enricher::ask_deferred`].
    pub fn defer_names(&mut self) {
        self.defer_names = true;
    }

    /// Ends the deferral and asks for every pending address; nothing to do
    /// when nothing was deferred (the engine calls it after every dump).
    pub fn ask_deferred(&mut self) -> usize {
        if !std::mem::replace(&mut self.defer_names, false) {
            return 0;
        }
        self.retry_pending()
    }

    pub fn book(&self) -> &Arc<AddressBook> {
        &self.book
    }

    pub fn dns_on(&self) -> bool {
        self.names.is_some()
    }

    pub fn arrived(&self) -> &Arc<NamesArrived> {
        &self.arrived
    }

    /// What the reverse resolver calls with each finished lookup: records
    /// the answer in the book and notes the address for `update` events
    /// when it brought a name.
    pub fn name_sink(book: Arc<AddressBook>, arrived: Arc<NamesArrived>) -> impl Fn(IpAddr, NameState) {
        move |ip, state| {
            let named = matches!(state, NameState::Name(_));
            book.update(ip, |v| v.name = state);
            if named {
                arrived.push(ip);
            }
        }
    }

    /// The filter for the resolver's own queries (held apart from the
    /// enricher, which the engine lends to the table's callback).
    pub fn own_queries(&self) -> OwnQueries {
        OwnQueries(self.names.clone())
    }

    /// Fills the book for both ends of a flow seen for the first time.
    pub fn see(&mut self, f: &Flow) {
        self.see_addr(f.orig.src);
        if f.orig.dst != f.orig.src {
            self.see_addr(f.orig.dst);
        }
    }

    fn see_addr(&mut self, ip: IpAddr) {
        if self.book.with(ip, |v| v.is_some()) {
            return;
        }
        let geo = self.geo.as_mut().map(|g| g.lookup(ip)).unwrap_or_default();
        let name = match &self.names {
            None => NameState::Unknown,
            Some(_) if self.defer_names => NameState::Pending,
            Some(n) => n.request(ip),
        };
        self.book.update(ip, |v| {
            v.scope = geo.scope;
            v.country = geo.country;
            v.city = geo.city;
            // An answer may have landed between the request and here: a
            // newer state is never overwritten by an older one.
            if v.name == NameState::Unknown || matches!(name, NameState::Name(_) | NameState::NoName) {
                v.name = name;
            }
        });
    }

    /// Once per refresh: a database replaced on disk is reopened (the
    /// addresses already seen keep what they had).
    pub fn refresh_geo(&mut self) -> Vec<String> {
        self.geo.as_mut().map(|g| g.refresh()).unwrap_or_default()
    }

    /// Asks again for the addresses still pending (a request the resolver
    /// dropped under load is queued again); returns how many are pending.
    pub fn retry_pending(&self) -> usize {
        let Some(names) = &self.names else {
            return 0;
        };
        if self.defer_names {
            return 0;
        }
        let mut pending = Vec::new();
        self.book.for_each(|ip, v| {
            if v.name == NameState::Pending {
                pending.push(*ip);
            }
        });
        let mut still = 0;
        for ip in pending {
            match names.request(ip) {
                NameState::Pending => still += 1,
                answer => self.book.update(ip, |v| {
                    if v.name == NameState::Pending {
                        v.name = answer;
                    }
                }),
            }
        }
        still
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::flow::model::{Family, Tuple};
    use std::collections::HashMap;

    /// A resolver answering from a map after `request` was called once
    /// (like a real one: first Pending, the name later).
    #[derive(Default)]
    pub struct FakeNames {
        pub answers: HashMap<IpAddr, NameState>,
        pub asked: Mutex<Vec<IpAddr>>,
        pub own: Vec<(SocketAddr, SocketAddr)>,
    }

    impl NameLookup for FakeNames {
        fn request(&self, ip: IpAddr) -> NameState {
            let mut asked = self.asked.lock().unwrap();
            let first = !asked.contains(&ip);
            asked.push(ip);
            if first {
                NameState::Pending
            } else {
                self.answers.get(&ip).cloned().unwrap_or(NameState::NoName)
            }
        }
        fn is_own_query(&self, _proto: u8, local: SocketAddr, remote: SocketAddr) -> bool {
            self.own.contains(&(local, remote))
        }
    }

    pub struct FakeGeo;
    impl GeoLookup for FakeGeo {
        fn lookup(&mut self, ip: IpAddr) -> GeoAnswer {
            if ip.to_string().starts_with("192.0.2.") {
                return GeoAnswer {
                    scope: Some("documentation"),
                    ..GeoAnswer::default()
                };
            }
            GeoAnswer {
                scope: None,
                country: Some("NZ".into()),
                city: Some("Wellington".into()),
            }
        }
    }

    pub fn udp(src: &str, sport: u16, dst: &str, dport: u16) -> Flow {
        let t = |s: &str, d: &str, sp, dp| Tuple {
            src: s.parse().unwrap(),
            dst: d.parse().unwrap(),
            sport: Some(sp),
            dport: Some(dp),
            icmp: None,
        };
        Flow {
            id: 1,
            family: Family::Ipv4,
            proto: proto::UDP,
            state: None,
            orig: t(src, dst, sport, dport),
            reply: t(dst, src, dport, sport),
            status: 0,
            mark: 0,
            zone: 0,
            timeout: Some(crate::flow::model::Timeout::from_secs(30)),
            counters: None,
            start_ns: None,
        }
    }

    #[test]
    fn geography_at_first_sight_and_names_when_they_arrive() {
        let book = AddressBook::new();
        let names = Arc::new(FakeNames {
            answers: [(
                "203.0.113.9".parse().unwrap(),
                NameState::Name("far.example".into()),
            )]
            .into(),
            ..FakeNames::default()
        });
        let mut e = Enricher::new(book.clone(), Some(Box::new(FakeGeo)), Some(names.clone()));
        e.see(&udp("192.0.2.1", 4000, "203.0.113.9", 443));
        let far = book.get("203.0.113.9".parse().unwrap()).unwrap();
        assert_eq!(far.name, NameState::Pending);
        assert_eq!(far.country.as_deref(), Some("NZ"));
        let near = book.get("192.0.2.1".parse().unwrap()).unwrap();
        assert_eq!(near.scope, Some("documentation"));
        assert_eq!(near.country, None);

        // The resolver's answer arrives through the sink.
        let sink = Enricher::name_sink(book.clone(), e.arrived().clone());
        sink(
            "203.0.113.9".parse().unwrap(),
            NameState::Name("far.example".into()),
        );
        assert_eq!(
            book.get("203.0.113.9".parse().unwrap()).unwrap().host(),
            Some("far.example")
        );
        assert_eq!(e.arrived().take(), vec!["203.0.113.9".parse::<IpAddr>().unwrap()]);
        assert!(e.arrived().take().is_empty());

        // A second flow to the same address asks nothing new.
        let asked = names.asked.lock().unwrap().len();
        e.see(&udp("192.0.2.1", 4001, "203.0.113.9", 443));
        assert_eq!(names.asked.lock().unwrap().len(), asked);
    }

    #[test]
    fn deferred_names_are_asked_only_when_the_deferral_ends() {
        let book = AddressBook::new();
        let names = Arc::new(FakeNames::default());
        let mut e = Enricher::new(book.clone(), Some(Box::new(FakeGeo)), Some(names.clone()));
        e.defer_names();
        e.see(&udp("198.51.100.1", 4000, "203.0.113.7", 443));
        let v = book.get("203.0.113.7".parse().unwrap()).unwrap();
        assert_eq!(v.name, NameState::Pending);
        assert_eq!(v.country.as_deref(), Some("NZ"), "geography is not deferred");
        assert_eq!(e.retry_pending(), 0);
        assert!(
            names.asked.lock().unwrap().is_empty(),
            "nothing asked while deferred"
        );
        e.ask_deferred();
        let asked = names.asked.lock().unwrap().clone();
        assert!(asked.contains(&"203.0.113.7".parse().unwrap()), "{asked:?}");
    }

    #[test]
    fn pending_names_are_asked_again_until_answered() {
        let book = AddressBook::new();
        let names = Arc::new(FakeNames::default());
        let mut e = Enricher::new(book.clone(), None, Some(names));
        e.see(&udp("198.51.100.1", 4000, "198.51.100.2", 53));
        assert_eq!(e.retry_pending(), 0, "the fake answers on the second ask");
        let v = book.get("198.51.100.2".parse().unwrap()).unwrap();
        assert_eq!(v.name, NameState::NoName);
    }

    #[test]
    fn only_the_resolvers_own_queries_are_hidden() {
        let local: SocketAddr = "198.51.100.1:40000".parse().unwrap();
        let server: SocketAddr = "198.51.100.53:53".parse().unwrap();
        let names = Arc::new(FakeNames {
            own: vec![(local, server)],
            ..FakeNames::default()
        });
        let own = Enricher::new(AddressBook::new(), None, Some(names)).own_queries();
        assert!(own.contains(&udp("198.51.100.1", 40000, "198.51.100.53", 53)));
        assert!(!own.contains(&udp("198.51.100.1", 40001, "198.51.100.53", 53)));
        assert!(!own.contains(&udp("198.51.100.1", 40000, "198.51.100.53", 5353)));
        let off = Enricher::new(AddressBook::new(), None, None).own_queries();
        assert!(!off.contains(&udp("198.51.100.1", 40000, "198.51.100.53", 53)));
    }
}
