//! The real sources behind the enricher's traits.

use std::net::{IpAddr, SocketAddr};

use super::book::NameState;
use super::dns::{Lookup, ReverseDns};
use super::enricher::{GeoAnswer, GeoLookup, NameLookup};
use super::geoip::{Geo, GeoCache};

impl From<Lookup> for NameState {
    fn from(l: Lookup) -> NameState {
        match l {
            Lookup::Pending => NameState::Pending,
            Lookup::Name(n) => NameState::Name(n),
            Lookup::NoName => NameState::NoName,
        }
    }
}

impl NameLookup for ReverseDns {
    fn request(&self, ip: IpAddr) -> NameState {
        ReverseDns::request(self, ip).into()
    }

    fn is_own_query(&self, proto: u8, local: SocketAddr, remote: SocketAddr) -> bool {
        ReverseDns::is_own_query(self, proto, local, remote)
    }
}

fn answer(g: Geo) -> GeoAnswer {
    GeoAnswer {
        scope: (!g.scope.is_public()).then(|| g.scope.label()),
        country: g.country,
        city: g.city,
    }
}

impl GeoLookup for GeoCache {
    fn lookup(&mut self, ip: IpAddr) -> GeoAnswer {
        answer(self.get(ip))
    }

    fn refresh(&mut self) -> Vec<String> {
        self.reopen_if_changed()
    }
}

/// Without a database (or with `-G`): addresses are still labelled private,
/// loopback, ... (a fact about the address, not a lookup).
pub struct ScopeOnly;

impl GeoLookup for ScopeOnly {
    fn lookup(&mut self, ip: IpAddr) -> GeoAnswer {
        answer(Geo::without_lookup(ip))
    }
}
