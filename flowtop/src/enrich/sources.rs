//! The real sources behind the enricher's traits.

use std::net::{IpAddr, SocketAddr};

use super::book::NameState;
use super::dns::{Lookup, ReverseDns};
use super::enricher::NameLookup;

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
