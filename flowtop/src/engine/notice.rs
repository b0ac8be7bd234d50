//! Warnings of a running engine: printed to stderr by the stream, shown in
//! the footer by the screen (and printed after it), and recognised by kind
//! rather than by their text.

use std::fmt;

/// The hint printed when conntrack tracks nothing in this namespace.
pub const EMPTY_TABLE_HINT: &str = "flowtop: the conntrack table of this network namespace is empty. \
If you expected flows: conntrack only tracks a namespace once a rule uses it, e.g.:\n  \
nft add table inet flowtop; nft add chain inet flowtop in '{ type filter hook input priority 0; }'; \
nft add rule inet flowtop in ct state established,related accept\n\
or: iptables -A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT";

/// One warning; its `Display` is the line users see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The first dump found nothing and the namespace tracks nothing
    /// ([`EMPTY_TABLE_HINT`]); moot once flows show up.
    EmptyTable,
    /// A dump failed; the table keeps what it had.
    DumpFailed(String),
    /// The hot refresh of active flows stopped part way.
    RefreshFailed(String),
    /// The first malformed conntrack message (later ones are only counted).
    Malformed(String),
    /// Something enrichment reports while running (e.g. a GeoIP reload).
    Enrichment(String),
}

impl fmt::Display for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Notice::EmptyTable => f.write_str(EMPTY_TABLE_HINT),
            Notice::DumpFailed(e) => write!(f, "flowtop: conntrack dump failed, keeping the last table: {e}"),
            Notice::RefreshFailed(e) => write!(f, "flowtop: refreshing active flows: {e}"),
            Notice::Malformed(reason) => write!(
                f,
                "flowtop: skipped a malformed conntrack message ({reason}); further ones are only counted"
            ),
            Notice::Enrichment(n) => write!(f, "flowtop: {n}"),
        }
    }
}

/// Notices collected while the screen owns the terminal.
pub type Notes = std::sync::Arc<std::sync::Mutex<Vec<Notice>>>;
