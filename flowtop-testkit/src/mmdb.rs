//! A small MaxMind DB writer, for test data only (unit tests, integration
//! tests, the benchmark and `examples/make_mmdb.rs`).
//!
//! Written from the format specification
//! (<https://maxmind.github.io/MaxMind-DB/>): a binary search tree over the
//! address bits with 32-bit records, a 16-byte zero separator, a data section
//! and the metadata map after the `\xab\xcd\xefMaxMind.com` marker. Records are
//! stored once per distinct network (no pointer compression, no IPv4 aliases
//! under ::ffff:0:0/96: flowtop looks IPv4-mapped addresses up as IPv4).
//! IPv4 networks in an IPv6 tree live under ::/96, as in MaxMind's files.
//!
//! Not for production databases: no size optimisation, everything in memory.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

/// A value of the MaxMind DB data section (the subset the writer needs).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    U16(u16),
    U32(u32),
    U64(u64),
    Double(f64),
    Bool(bool),
    Array(Vec<Value>),
    /// Keys in insertion order.
    Map(Vec<(String, Value)>),
}

impl Value {
    /// A map from `(key, value)` pairs.
    pub fn map<const N: usize>(pairs: [(&str, Value); N]) -> Value {
        Value::Map(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }

    pub fn str(s: &str) -> Value {
        Value::Str(s.to_owned())
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Value::Str(s) => {
                control(out, 2, s.len());
                out.extend_from_slice(s.as_bytes());
            }
            Value::Double(d) => {
                control(out, 3, 8);
                out.extend_from_slice(&d.to_be_bytes());
            }
            Value::U16(v) => uint(out, 5, u64::from(*v)),
            Value::U32(v) => uint(out, 6, u64::from(*v)),
            Value::U64(v) => uint(out, 9, *v),
            Value::Map(pairs) => {
                control(out, 7, pairs.len());
                for (k, v) in pairs {
                    Value::Str(k.clone()).encode(out);
                    v.encode(out);
                }
            }
            Value::Array(items) => {
                control(out, 11, items.len());
                for v in items {
                    v.encode(out);
                }
            }
            // The boolean's value is its size field.
            Value::Bool(b) => control(out, 14, usize::from(*b)),
        }
    }
}

/// Control byte(s): type in the top 3 bits (0 = extended, the type - 7 in the
/// next byte), size in the low 5 bits with 1-3 extension bytes after.
fn control(out: &mut Vec<u8>, ty: u8, size: usize) {
    let (low, ext): (u8, Vec<u8>) = if size < 29 {
        (size as u8, vec![])
    } else if size < 285 {
        (29, vec![(size - 29) as u8])
    } else if size < 65_821 {
        (30, ((size - 285) as u16).to_be_bytes().to_vec())
    } else {
        let v = (size - 65_821) as u32;
        (31, v.to_be_bytes()[1..].to_vec())
    };
    if ty <= 7 {
        out.push((ty << 5) | low);
    } else {
        out.push(low);
        out.push(ty - 7);
    }
    out.extend_from_slice(&ext);
}

/// Unsigned integers: big endian, leading zero bytes dropped.
fn uint(out: &mut Vec<u8>, ty: u8, v: u64) {
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().take_while(|&&b| b == 0).count();
    control(out, ty, 8 - skip);
    out.extend_from_slice(&bytes[skip..]);
}

/// A record of the GeoIP2/GeoLite2 City shape (also what DB-IP City Lite
/// holds): `continent`, `country.iso_code`, `country.names.en`,
/// `city.names.en`.
pub fn city_record(iso: &str, country_name: &str, city: &str) -> Value {
    Value::map([
        (
            "city",
            Value::map([("names", Value::map([("en", Value::str(city))]))]),
        ),
        ("country", country_value(iso, country_name)),
        (
            "location",
            Value::map([
                ("latitude", Value::Double(0.0)),
                ("longitude", Value::Double(0.0)),
            ]),
        ),
    ])
}

/// A record of the GeoIP2/GeoLite2 Country shape.
pub fn country_record(iso: &str, country_name: &str) -> Value {
    Value::map([("country", country_value(iso, country_name))])
}

fn country_value(iso: &str, name: &str) -> Value {
    Value::map([
        ("geoname_id", Value::U32(1)),
        ("is_in_european_union", Value::Bool(false)),
        ("iso_code", Value::str(iso)),
        ("names", Value::map([("en", Value::str(name))])),
    ])
}

/// One edge of the tree under construction.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Rec {
    Empty,
    Node(u32),
    Data(usize),
}

/// Builds a database in memory. Insert networks in any order: more
/// specific networks win over the ones containing them.
#[derive(Debug)]
pub struct Writer {
    database_type: String,
    ip_version: u16,
    build_epoch: u64,
    networks: Vec<(u128, u8, Value)>,
}

impl Writer {
    /// `ip_version` 6 (IPv4 under ::/96) or 4.
    pub fn new(database_type: &str, ip_version: u16) -> Writer {
        Writer {
            database_type: database_type.to_owned(),
            ip_version,
            build_epoch: 1_700_000_000,
            networks: Vec::new(),
        }
    }

    pub fn build_epoch(mut self, epoch: u64) -> Writer {
        self.build_epoch = epoch;
        self
    }

    /// Adds `ip/len` (`len` counted in the address's own family).
    pub fn insert(&mut self, ip: IpAddr, len: u8, value: Value) -> Result<(), String> {
        let (bits, len) = match (ip, self.ip_version) {
            (IpAddr::V4(v4), 6) if len <= 32 => (u128::from(u32::from(v4)), 96 + len),
            (IpAddr::V4(v4), 4) if len <= 32 => (u128::from(u32::from(v4)) << 96, len),
            (IpAddr::V6(v6), 6) if len <= 128 => (u128::from(v6), len),
            _ => return Err(format!("{ip}/{len} does not fit an IPv{} tree", self.ip_version)),
        };
        if len == 0 {
            return Err("a /0 network is not supported".into());
        }
        let mask = u128::MAX.checked_shl(u32::from(128 - len)).unwrap_or(0);
        self.networks.push((bits & mask, len, value));
        Ok(())
    }

    /// Parses `CIDR` (`a.b.c.d/n`, `x::/n`, or a bare address) and inserts.
    pub fn insert_cidr(&mut self, cidr: &str, value: Value) -> Result<(), String> {
        let (addr, len) = match cidr.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (cidr, None),
        };
        let ip: IpAddr = addr
            .parse()
            .map_err(|_| format!("'{addr}' is not an IP address"))?;
        let len = match len {
            Some(l) => l.parse().map_err(|_| format!("'{l}' is not a prefix length"))?,
            None if ip.is_ipv4() => 32,
            None => 128,
        };
        self.insert(ip, len, value)
    }

    /// The whole file.
    pub fn to_bytes(&self) -> Vec<u8> {
        // In the tree an IPv4 tree's keys sit in the top 32 bits.
        let depth = if self.ip_version == 4 { 32 } else { 128 };
        let mut order: Vec<usize> = (0..self.networks.len()).collect();
        // Shorter prefixes first, so later, more specific ones split them.
        order.sort_by_key(|&i| self.networks[i].1);
        let mut nodes: Vec<[Rec; 2]> = vec![[Rec::Empty; 2]];
        for i in order {
            let (bits, len, _) = &self.networks[i];
            let len = usize::from(*len).min(depth);
            let mut node = 0usize;
            for d in 0..len {
                let bit = ((bits >> (127 - d)) & 1) as usize;
                if d + 1 == len {
                    // Everything below this edge now belongs to network i;
                    // sub-networks inserted earlier are shorter, so none exist.
                    nodes[node][bit] = Rec::Data(i);
                    break;
                }
                node = match nodes[node][bit] {
                    Rec::Node(n) => n as usize,
                    other => {
                        // Empty or a shorter network's data: split the edge.
                        let fill = if let Rec::Data(_) = other {
                            other
                        } else {
                            Rec::Empty
                        };
                        nodes.push([fill, fill]);
                        let n = nodes.len() - 1;
                        nodes[node][bit] = Rec::Node(n as u32);
                        n
                    }
                };
            }
        }
        let node_count = nodes.len() as u32;
        let mut data = Vec::new();
        let mut offsets = BTreeMap::new();
        for (i, (_, _, v)) in self.networks.iter().enumerate() {
            offsets.insert(i, data.len());
            v.encode(&mut data);
        }
        let mut out = Vec::with_capacity(nodes.len() * 8 + 16 + data.len() + 256);
        for node in &nodes {
            for rec in node {
                let v = match *rec {
                    Rec::Empty => node_count,
                    Rec::Node(n) => n,
                    Rec::Data(i) => node_count + 16 + offsets.get(&i).copied().unwrap_or(0) as u32,
                };
                out.extend_from_slice(&v.to_be_bytes());
            }
        }
        out.extend_from_slice(&[0u8; 16]);
        out.extend_from_slice(&data);
        out.extend_from_slice(b"\xab\xcd\xefMaxMind.com");
        Value::Map(vec![
            ("binary_format_major_version".into(), Value::U16(2)),
            ("binary_format_minor_version".into(), Value::U16(0)),
            ("build_epoch".into(), Value::U64(self.build_epoch)),
            ("database_type".into(), Value::str(&self.database_type)),
            (
                "description".into(),
                Value::map([("en", Value::str("flowtop test data"))]),
            ),
            ("ip_version".into(), Value::U16(self.ip_version)),
            ("languages".into(), Value::Array(vec![Value::str("en")])),
            ("node_count".into(), Value::U32(node_count)),
            ("record_size".into(), Value::U16(32)),
        ])
        .encode(&mut out);
        out
    }

    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.to_bytes())
    }
}

/// The kind of record a `make_mmdb`-style spec line describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    City,
    Country,
}

/// `CIDR=CC[,City]` -> the network and its record.
pub fn parse_spec(kind: Kind, spec: &str) -> Result<(String, Value), String> {
    let (cidr, rest) = spec
        .split_once('=')
        .ok_or_else(|| format!("'{spec}': expected CIDR=CC[,City]"))?;
    let (cc, city) = match rest.split_once(',') {
        Some((cc, city)) => (cc, Some(city)),
        None => (rest, None),
    };
    let value = match kind {
        Kind::City => city_record(cc, cc, city.unwrap_or("")),
        Kind::Country => country_record(cc, cc),
    };
    Ok((cidr.to_owned(), value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use maxminddb::Reader;
    use serde::Deserialize;

    #[derive(Deserialize, Debug)]
    struct Names<'a> {
        #[serde(borrow)]
        en: Option<&'a str>,
    }
    #[derive(Deserialize, Debug)]
    struct Named<'a> {
        #[serde(borrow)]
        names: Option<Names<'a>>,
        iso_code: Option<&'a str>,
    }
    #[derive(Deserialize, Debug)]
    struct Rec<'a> {
        #[serde(borrow)]
        country: Option<Named<'a>>,
        #[serde(borrow)]
        city: Option<Named<'a>>,
    }

    fn look(r: &Reader<Vec<u8>>, ip: &str) -> Option<(String, Option<String>)> {
        let res = r.lookup(ip.parse().expect("ip")).expect("lookup");
        let rec: Rec = res.decode().expect("decode")?;
        let cc = rec.country.and_then(|c| c.iso_code).map(str::to_owned)?;
        let city = rec
            .city
            .and_then(|c| c.names)
            .and_then(|n| n.en)
            .map(str::to_owned);
        Some((cc, city))
    }

    #[test]
    fn written_files_read_back_with_nested_networks_v4_and_v6() {
        let mut w = Writer::new("GeoLite2-City", 6);
        w.insert_cidr("81.2.69.0/24", city_record("GB", "United Kingdom", "London"))
            .expect("insert");
        // A more specific network inside, inserted after, and a containing
        // one inserted after both.
        w.insert_cidr("81.2.69.160/27", city_record("GB", "United Kingdom", "Oxford"))
            .expect("insert");
        w.insert_cidr("81.0.0.0/8", city_record("SE", "Sweden", ""))
            .expect("insert");
        w.insert_cidr("2001:480::/32", city_record("US", "United States", "San Diego"))
            .expect("insert");
        w.insert_cidr("2001:480:10::/48", city_record("JP", "Japan", "Tokyo"))
            .expect("insert");
        w.insert_cidr("1.2.3.4", country_record("AU", "Australia"))
            .expect("insert");
        let r = Reader::from_source(w.to_bytes()).expect("valid database");
        assert_eq!(r.metadata().database_type, "GeoLite2-City");
        assert_eq!(r.metadata().ip_version, 6);
        r.verify().expect("verifies");
        let s = |x: &str| Some(x.to_owned());
        assert_eq!(look(&r, "81.2.69.1"), Some(("GB".into(), s("London"))));
        assert_eq!(look(&r, "81.2.69.170"), Some(("GB".into(), s("Oxford"))));
        assert_eq!(look(&r, "81.2.69.192"), Some(("GB".into(), s("London"))));
        assert_eq!(look(&r, "81.200.1.1"), Some(("SE".into(), s(""))));
        assert_eq!(look(&r, "2001:480:1::5"), Some(("US".into(), s("San Diego"))));
        assert_eq!(look(&r, "2001:480:10::5"), Some(("JP".into(), s("Tokyo"))));
        assert_eq!(look(&r, "1.2.3.4"), Some(("AU".into(), None)));
        assert_eq!(look(&r, "1.2.3.5"), None);
        assert_eq!(look(&r, "82.0.0.1"), None);
        assert_eq!(look(&r, "2a00::1"), None);
    }

    #[test]
    fn ipv4_trees_and_long_strings() {
        let mut w = Writer::new("GeoLite2-Country", 4);
        let long = "x".repeat(70_000);
        w.insert_cidr("10.0.0.0/8", city_record("ZZ", &"n".repeat(300), &long))
            .expect("insert");
        assert!(w
            .insert_cidr("2001:db8::/32", country_record("US", "US"))
            .is_err());
        let r = Reader::from_source(w.to_bytes()).expect("valid database");
        assert_eq!(r.metadata().ip_version, 4);
        r.verify().expect("verifies");
        assert_eq!(look(&r, "10.9.9.9"), Some(("ZZ".into(), Some(long))));
        assert_eq!(look(&r, "11.0.0.1"), None);
    }

    #[test]
    fn empty_database_is_valid() {
        let r = Reader::from_source(Writer::new("GeoLite2-City", 6).to_bytes()).expect("valid");
        assert_eq!(look(&r, "8.8.8.8"), None);
    }

    #[test]
    fn specs_parse() {
        let (cidr, v) = parse_spec(Kind::City, "1.0.0.0/8=AU,Sydney").expect("spec");
        assert_eq!(cidr, "1.0.0.0/8");
        assert_eq!(v, city_record("AU", "AU", "Sydney"));
        assert!(parse_spec(Kind::Country, "nonsense").is_err());
    }
}
