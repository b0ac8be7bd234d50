//! The Community ID flow hash, version 1 (<https://github.com/corelight/community-id-spec>):
//! a string both ends of a connection, and every tool that sees it (Zeek,
//! Suricata, Elastic), compute alike from the 5-tuple, so that their records
//! join with flowtop's.
//!
//! The hash covers a seed, the two addresses, the protocol and the two
//! ports (for ICMP: the type and either the type's counterpart or the
//! code), ordered so that both directions give the same value: SHA-1,
//! base64, prefixed with the version `1:`.

use std::net::IpAddr;

use crate::flow::model::{proto, Tuple};

/// The seed every tool uses unless configured otherwise.
pub const DEFAULT_SEED: u16 = 0;

/// Two-way ICMP types and their counterparts (echo and its reply, ...):
/// these count as one flow in both directions. Any other type is one-way.
const ICMP4_PAIRS: &[(u8, u8)] = &[(8, 0), (13, 14), (15, 16), (10, 9), (17, 18)];
const ICMP6_PAIRS: &[(u8, u8)] = &[
    (128, 129),
    (130, 131),
    (133, 134),
    (135, 136),
    (139, 140),
    (144, 145),
];

fn counterpart(pairs: &[(u8, u8)], t: u8) -> Option<u8> {
    pairs.iter().find_map(|&(a, b)| {
        if a == t {
            Some(b)
        } else if b == t {
            Some(a)
        } else {
            None
        }
    })
}

/// The Community ID of a flow from its original tuple, or `None` when the
/// tuple lacks what its protocol needs (ports, or ICMP type and code).
pub fn community_id(proto_num: u8, orig: &Tuple) -> Option<String> {
    community_id_seeded(DEFAULT_SEED, proto_num, orig)
}

/// [`community_id`] with another seed.
pub fn community_id_seeded(seed: u16, proto_num: u8, orig: &Tuple) -> Option<String> {
    // Ports count only for the protocols the specification lists; other
    // protocols (including DCCP and UDP-lite, which conntrack gives ports)
    // hash addresses and protocol alone, as the other implementations do.
    let (ports, one_way) = match proto_num {
        proto::TCP | proto::UDP | proto::SCTP => (Some((orig.sport?, orig.dport?)), false),
        proto::ICMP | proto::ICMPV6 => {
            let icmp = orig.icmp?;
            let pairs = if proto_num == proto::ICMP {
                ICMP4_PAIRS
            } else {
                ICMP6_PAIRS
            };
            match counterpart(pairs, icmp.icmp_type) {
                Some(other) => (Some((u16::from(icmp.icmp_type), u16::from(other))), false),
                None => (Some((u16::from(icmp.icmp_type), u16::from(icmp.code))), true),
            }
        }
        _ => (None, false),
    };
    let (src, dst) = (octets(orig.src), octets(orig.dst));
    let (sp, dp) = ports.unwrap_or((0, 0));
    // Ordered: the smaller address first (ports break a tie), so that the
    // reply direction hashes alike. One-way ICMP keeps its order.
    let flip = !one_way && (dst < src || (dst == src && ports.is_some() && dp < sp));
    let ((a, ap), (b, bp)) = if flip {
        ((&dst, dp), (&src, sp))
    } else {
        ((&src, sp), (&dst, dp))
    };
    let mut buf = Vec::with_capacity(2 + 16 + 16 + 2 + 4);
    buf.extend_from_slice(&seed.to_be_bytes());
    buf.extend_from_slice(a);
    buf.extend_from_slice(b);
    buf.push(proto_num);
    buf.push(0); // padding
    if ports.is_some() {
        buf.extend_from_slice(&ap.to_be_bytes());
        buf.extend_from_slice(&bp.to_be_bytes());
    }
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &buf);
    let mut out = String::with_capacity(30);
    out.push_str("1:");
    base64(digest.as_ref(), &mut out);
    Some(out)
}

/// An address's bytes in network order (the hash compares and covers these).
fn octets(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// Standard base64 with padding (RFC 4648 section 4).
fn base64(bytes: &[u8], out: &mut String) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The expected values were computed by the reference Python package
    //! `communityid` 1.5.0 (pip), not by this code: the first four are the
    //! specification's own examples (its `baseline` data).
    use super::*;
    use crate::flow::model::Icmp;

    fn ports(src: &str, sport: u16, dst: &str, dport: u16) -> Tuple {
        Tuple {
            src: src.parse().expect("address"),
            dst: dst.parse().expect("address"),
            sport: Some(sport),
            dport: Some(dport),
            icmp: None,
        }
    }

    fn icmp(src: &str, dst: &str, icmp_type: u8, code: u8) -> Tuple {
        Tuple {
            src: src.parse().expect("address"),
            dst: dst.parse().expect("address"),
            sport: None,
            dport: None,
            icmp: Some(Icmp {
                icmp_type,
                code,
                id: 7,
            }),
        }
    }

    #[test]
    fn tcp_both_directions() {
        let want = Some("1:LQU9qZlK+B5F3KDmev6m5PMibrg=".to_string());
        assert_eq!(
            community_id(proto::TCP, &ports("128.232.110.120", 34855, "66.35.250.204", 80)),
            want
        );
        assert_eq!(
            community_id(proto::TCP, &ports("66.35.250.204", 80, "128.232.110.120", 34855)),
            want
        );
    }

    #[test]
    fn seeded() {
        let t = ports("128.232.110.120", 34855, "66.35.250.204", 80);
        assert_eq!(
            community_id_seeded(1, proto::TCP, &t).as_deref(),
            Some("1:3V71V58M3Ksw/yuFALMcW0LAHvc=")
        );
    }

    #[test]
    fn udp_and_ipv6_tcp_and_sctp() {
        assert_eq!(
            community_id(proto::UDP, &ports("192.168.1.52", 54585, "8.8.8.8", 53)).as_deref(),
            Some("1:d/FP5EW3wiY1vCndhwleRRKHowQ=")
        );
        assert_eq!(
            community_id(proto::TCP, &ports("2001:db8::1", 443, "2001:db8::2", 40000)).as_deref(),
            Some("1:jn1M/64iWT+nYqxpE1jYHo+15rE=")
        );
        assert_eq!(
            community_id(proto::SCTP, &ports("192.168.170.8", 7, "192.168.170.56", 80)).as_deref(),
            Some("1:jQgCxbku+pNGw8WPbEc/TS/uTpQ=")
        );
    }

    #[test]
    fn icmp_two_way_and_one_way() {
        let want = Some("1:X0snYXpgwiv9TZtqg64sgzUn6Dk=".to_string());
        assert_eq!(
            community_id(proto::ICMP, &icmp("192.168.0.89", "192.168.0.1", 8, 0)),
            want
        );
        assert_eq!(
            community_id(proto::ICMP, &icmp("192.168.0.1", "192.168.0.89", 0, 0)),
            want
        );
        // Destination unreachable is one-way: not reordered, code as port.
        assert_eq!(
            community_id(proto::ICMP, &icmp("10.0.0.2", "10.0.0.1", 3, 1)).as_deref(),
            Some("1:JHjlyD5IJJjl3wHWOMj46lLWZag=")
        );
        let want6 = Some("1:dGHyGvjMfljg6Bppwm3bg0LO8TY=".to_string());
        let (a, b) = ("fe80::200:86ff:fe05:80da", "fe80::260:97ff:fe07:69ea");
        assert_eq!(community_id(proto::ICMPV6, &icmp(a, b, 135, 0)), want6);
        assert_eq!(community_id(proto::ICMPV6, &icmp(b, a, 136, 0)), want6);
    }

    #[test]
    fn portless_protocol() {
        let t = Tuple {
            src: "10.0.0.1".parse().expect("address"),
            dst: "10.0.0.2".parse().expect("address"),
            sport: None,
            dport: None,
            icmp: None,
        };
        assert_eq!(
            community_id(47, &t).as_deref(),
            Some("1:+KlEHDT0vJgzs/eNmzHq0aSpRYw=")
        );
        // TCP without ports cannot be hashed.
        assert_eq!(community_id(proto::TCP, &t), None);
    }
}
