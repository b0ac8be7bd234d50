//! The pure flow model and table: no I/O, time passed in by the caller.

pub mod clock;
pub mod model;
pub mod rate;
mod store;
pub mod table;

pub use model::{Family, Flow};
pub use table::{EventKind, FlowTable};

/// Which families and protocols the user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    pub ipv4: bool,
    pub ipv6: bool,
    /// Bit `p` set when IP protocol `p` is shown.
    protos: [u64; 4],
}

impl Selection {
    /// An empty selection (nothing shown) to build on.
    pub fn none() -> Self {
        Selection {
            ipv4: false,
            ipv6: false,
            protos: [0; 4],
        }
    }

    /// Every family and every protocol, known or not.
    pub fn everything() -> Self {
        Selection {
            ipv4: true,
            ipv6: true,
            protos: [u64::MAX; 4],
        }
    }

    pub fn with_proto(mut self, p: u8) -> Self {
        self.protos[usize::from(p >> 6)] |= 1 << (p & 63);
        self
    }

    /// Shows (`on`) or hides protocol `p` (the screen's `T U D I S`).
    pub fn set_proto(&mut self, p: u8, on: bool) {
        let bit = 1 << (p & 63);
        let word = &mut self.protos[usize::from(p >> 6)];
        if on {
            *word |= bit;
        } else {
            *word &= !bit;
        }
    }

    pub fn family(&self, f: Family) -> bool {
        match f {
            Family::Ipv4 => self.ipv4,
            Family::Ipv6 => self.ipv6,
        }
    }

    pub fn proto(&self, p: u8) -> bool {
        self.protos[usize::from(p >> 6)] & (1 << (p & 63)) != 0
    }

    /// The nfgenmsg family to dump: both (`AF_UNSPEC`) or just one.
    pub fn dump_family(&self) -> u8 {
        match (self.ipv4, self.ipv6) {
            (true, false) => libc::AF_INET as u8,
            (false, true) => libc::AF_INET6 as u8,
            _ => 0,
        }
    }

    /// Short names of the selected protocols, for headers.
    pub fn proto_names(&self) -> Vec<String> {
        (0..=255u8)
            .filter(|&p| self.proto(p))
            .map(|p| model::proto::name(p).map_or_else(|| p.to_string(), str::to_owned))
            .collect()
    }
}
