//! Address scopes: which addresses a geography can exist for.
//!
//! A GeoIP database only knows globally routed addresses. Everything else
//! (private, loopback, link-local, documentation, ...) is labelled here and
//! never looked up: a lookup could only miss, or worse, hit a bogus entry.
//! IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are classified as the IPv4
//! address they carry.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What kind of address an IP is, as far as geography is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Globally routed: the only scope that is looked up.
    Public,
    /// RFC 1918 (10/8, 172.16/12, 192.168/16), IPv6 unique local fc00::/7
    /// and the deprecated site-local fec0::/10.
    Private,
    /// 127/8, ::1.
    Loopback,
    /// 169.254/16, fe80::/10.
    LinkLocal,
    /// 192.0.2/24, 198.51.100/24, 203.0.113/24, 2001:db8::/32, 3fff::/20.
    Documentation,
    /// 224/4, ff00::/8.
    Multicast,
    /// 0.0.0.0, ::.
    Unspecified,
    /// 100.64/10, shared address space of carrier-grade NAT (RFC 6598).
    CarrierNat,
    /// 198.18/15, 2001:2::/48 (RFC 2544 / RFC 5180).
    Benchmarking,
    /// 255.255.255.255.
    Broadcast,
    /// Anything else not globally routed: 0/8, 192.0.0/24, 240/4, 100::/64,
    /// the deprecated IPv4-compatible ::/96.
    Reserved,
}

impl Scope {
    /// Short lowercase label for tables and JSON.
    pub fn label(&self) -> &'static str {
        match self {
            Scope::Public => "public",
            Scope::Private => "private",
            Scope::Loopback => "loopback",
            Scope::LinkLocal => "link-local",
            Scope::Documentation => "documentation",
            Scope::Multicast => "multicast",
            Scope::Unspecified => "unspecified",
            Scope::CarrierNat => "cgnat",
            Scope::Benchmarking => "benchmarking",
            Scope::Broadcast => "broadcast",
            Scope::Reserved => "reserved",
        }
    }

    /// Whether a GeoIP lookup makes sense for this scope.
    pub fn is_public(&self) -> bool {
        *self == Scope::Public
    }
}

/// The scope of `ip`. Total: never panics, every address has one.
pub fn classify(ip: IpAddr) -> Scope {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Scope {
    let o = ip.octets();
    let in_net = |net: [u8; 4], len: u32| {
        let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
        u32::from(ip) & mask == u32::from_be_bytes(net) & mask
    };
    if ip.is_unspecified() {
        Scope::Unspecified
    } else if ip.is_broadcast() {
        Scope::Broadcast
    } else if o[0] == 127 {
        Scope::Loopback
    } else if ip.is_private() {
        Scope::Private
    } else if ip.is_link_local() {
        Scope::LinkLocal
    } else if ip.is_documentation() {
        Scope::Documentation
    } else if ip.is_multicast() {
        Scope::Multicast
    } else if in_net([100, 64, 0, 0], 10) {
        Scope::CarrierNat
    } else if in_net([198, 18, 0, 0], 15) {
        Scope::Benchmarking
    } else if o[0] == 0 || o[0] >= 240 || in_net([192, 0, 0, 0], 24) {
        Scope::Reserved
    } else {
        Scope::Public
    }
}

fn classify_v6(ip: Ipv6Addr) -> Scope {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    let s = ip.segments();
    let in_net = |net: u128, len: u32| {
        let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
        u128::from(ip) & mask == net & mask
    };
    if ip.is_unspecified() {
        Scope::Unspecified
    } else if ip.is_loopback() {
        Scope::Loopback
    } else if s[0] & 0xff00 == 0xff00 {
        Scope::Multicast
    } else if s[0] & 0xffc0 == 0xfe80 {
        Scope::LinkLocal
    } else if s[0] & 0xfe00 == 0xfc00 || s[0] & 0xffc0 == 0xfec0 {
        Scope::Private
    } else if in_net(0x2001_0db8 << 96, 32) || in_net(0x3fff << 112, 20) {
        Scope::Documentation
    } else if in_net(0x2001_0002 << 96, 48) {
        Scope::Benchmarking
    } else if in_net(0x0100 << 112, 64) || in_net(0, 96) {
        // Discard-only prefix, and the deprecated IPv4-compatible addresses.
        Scope::Reserved
    } else {
        Scope::Public
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn table() {
        let cases: &[(&str, Scope, &str)] = &[
            ("8.8.8.8", Scope::Public, "public"),
            ("1.1.1.1", Scope::Public, "public"),
            ("10.1.2.3", Scope::Private, "private"),
            ("172.16.0.1", Scope::Private, "private"),
            ("172.31.255.255", Scope::Private, "private"),
            ("172.32.0.1", Scope::Public, "public"),
            ("192.168.1.1", Scope::Private, "private"),
            ("127.0.0.1", Scope::Loopback, "loopback"),
            ("127.255.0.9", Scope::Loopback, "loopback"),
            ("169.254.10.1", Scope::LinkLocal, "link-local"),
            ("192.0.2.1", Scope::Documentation, "documentation"),
            ("198.51.100.7", Scope::Documentation, "documentation"),
            ("203.0.113.200", Scope::Documentation, "documentation"),
            ("224.0.0.1", Scope::Multicast, "multicast"),
            ("239.255.255.250", Scope::Multicast, "multicast"),
            ("0.0.0.0", Scope::Unspecified, "unspecified"),
            ("0.1.2.3", Scope::Reserved, "reserved"),
            ("100.64.0.1", Scope::CarrierNat, "cgnat"),
            ("100.127.255.255", Scope::CarrierNat, "cgnat"),
            ("100.128.0.1", Scope::Public, "public"),
            ("100.63.255.255", Scope::Public, "public"),
            ("198.18.0.1", Scope::Benchmarking, "benchmarking"),
            ("198.19.255.1", Scope::Benchmarking, "benchmarking"),
            ("198.20.0.1", Scope::Public, "public"),
            ("192.0.0.8", Scope::Reserved, "reserved"),
            ("240.0.0.1", Scope::Reserved, "reserved"),
            ("255.255.255.255", Scope::Broadcast, "broadcast"),
            ("2606:4700::1111", Scope::Public, "public"),
            ("2a00:1450::1", Scope::Public, "public"),
            ("::", Scope::Unspecified, "unspecified"),
            ("::1", Scope::Loopback, "loopback"),
            ("fe80::1", Scope::LinkLocal, "link-local"),
            ("febf::1", Scope::LinkLocal, "link-local"),
            ("fc00::1", Scope::Private, "private"),
            ("fd12:3456::1", Scope::Private, "private"),
            ("fec0::1", Scope::Private, "private"),
            ("ff02::1", Scope::Multicast, "multicast"),
            ("2001:db8::1", Scope::Documentation, "documentation"),
            ("2001:db9::1", Scope::Public, "public"),
            ("3fff:fff::1", Scope::Documentation, "documentation"),
            ("2001:2::1", Scope::Benchmarking, "benchmarking"),
            ("100::1", Scope::Reserved, "reserved"),
            ("::1.2.3.4", Scope::Reserved, "reserved"),
            ("::ffff:8.8.8.8", Scope::Public, "public"),
            ("::ffff:10.0.0.1", Scope::Private, "private"),
            ("::ffff:127.0.0.1", Scope::Loopback, "loopback"),
            ("::ffff:100.64.1.1", Scope::CarrierNat, "cgnat"),
        ];
        for (ip, scope, label) in cases {
            let got = classify(ip.parse().expect("test address"));
            assert_eq!(got, *scope, "{ip}");
            assert_eq!(got.label(), *label, "{ip}");
            assert_eq!(got.is_public(), *scope == Scope::Public, "{ip}");
        }
    }

    proptest! {
        #[test]
        fn classify_never_panics_v4(bits in any::<u32>()) {
            let s = classify(IpAddr::V4(Ipv4Addr::from(bits)));
            prop_assert!(!s.label().is_empty());
        }

        #[test]
        fn classify_never_panics_v6(bits in any::<u128>()) {
            let s = classify(IpAddr::V6(Ipv6Addr::from(bits)));
            prop_assert!(!s.label().is_empty());
        }

        #[test]
        fn mapped_v6_agrees_with_v4(bits in any::<u32>()) {
            let v4 = Ipv4Addr::from(bits);
            prop_assert_eq!(classify(IpAddr::V6(v4.to_ipv6_mapped())), classify(IpAddr::V4(v4)));
        }
    }
}
