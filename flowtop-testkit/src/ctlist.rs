//! `conntrack -L -o extended,id` parsed, the ground truth flowtop's output
//! is compared with.

use std::collections::BTreeSet;
use std::net::IpAddr;

/// One line of `conntrack -L -o extended,id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtEntry {
    pub family: String,
    pub proto: String,
    pub protonum: u8,
    pub timeout: u64,
    pub state: Option<String>,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    /// (type, code, id) of the original direction for icmp/icmpv6.
    pub icmp: Option<(u8, u8, u16)>,
    pub reply_src: IpAddr,
    pub reply_dst: IpAddr,
    pub reply_sport: Option<u16>,
    pub reply_dport: Option<u16>,
    pub assured: bool,
    pub unreplied: bool,
    pub mark: u32,
    pub id: u32,
}

#[derive(Default)]
struct RawTuple {
    src: Option<IpAddr>,
    dst: Option<IpAddr>,
    sport: Option<u16>,
    dport: Option<u16>,
    itype: Option<u8>,
    icode: Option<u8>,
    iid: Option<u16>,
}

impl CtEntry {
    /// Parses e.g. `ipv4 2 tcp 6 299 ESTABLISHED src=.. dst=.. sport=.. dport=..
    /// [UNREPLIED] src=.. dst=.. sport=.. dport=.. [ASSURED] mark=0 use=1 id=123`.
    /// With accounting on, `packets=` and `bytes=` follow each tuple; icmp
    /// tuples have `type= code= id=`; the conntrack id is the `id=` after `mark=`.
    pub fn parse(line: &str) -> Result<CtEntry, String> {
        let toks: Vec<&str> = line.split_whitespace().collect();
        if toks.len() < 6 {
            return Err("too few fields".into());
        }
        let family = toks[0].to_string();
        let proto = toks[2].to_string();
        let protonum: u8 = toks[3].parse().map_err(|e| format!("protonum: {e}"))?;
        let timeout: u64 = toks[4].parse().map_err(|e| format!("timeout: {e}"))?;
        let mut rest = &toks[5..];
        let mut state = None;
        if let Some(first) = rest.first() {
            if !first.contains('=') && !first.starts_with('[') {
                state = Some(first.to_string());
                rest = &rest[1..];
            }
        }
        let mut tuples: Vec<RawTuple> = Vec::new();
        let mut in_meta = false;
        let (mut assured, mut unreplied) = (false, false);
        let (mut mark, mut id) = (None, None);
        for t in rest {
            if *t == "[ASSURED]" {
                assured = true;
                continue;
            }
            if *t == "[UNREPLIED]" {
                unreplied = true;
                continue;
            }
            let Some((k, v)) = t.split_once('=') else { continue };
            let num = |what: &str| -> Result<u64, String> {
                v.parse::<u64>().map_err(|e| format!("{what}={v}: {e}"))
            };
            if in_meta {
                if k == "id" {
                    id = Some(u32::try_from(num("id")?).map_err(|e| e.to_string())?);
                }
                continue;
            }
            match k {
                "src" => {
                    tuples.push(RawTuple::default());
                    let a = v.parse().map_err(|e| format!("src={v}: {e}"))?;
                    tuples.last_mut().ok_or("no tuple")?.src = Some(a);
                }
                "dst" => {
                    tuples.last_mut().ok_or("dst before src")?.dst =
                        Some(v.parse().map_err(|e| format!("dst={v}: {e}"))?)
                }
                "sport" => tuples.last_mut().ok_or("sport before src")?.sport = Some(num("sport")? as u16),
                "dport" => tuples.last_mut().ok_or("dport before src")?.dport = Some(num("dport")? as u16),
                "type" => tuples.last_mut().ok_or("type before src")?.itype = Some(num("type")? as u8),
                "code" => tuples.last_mut().ok_or("code before src")?.icode = Some(num("code")? as u8),
                "id" => tuples.last_mut().ok_or("id before src")?.iid = Some(num("id")? as u16),
                "mark" => {
                    mark = Some(u32::try_from(num("mark")?).map_err(|e| e.to_string())?);
                    in_meta = true;
                }
                "use" => in_meta = true,
                _ => {} // packets=, bytes=, zone=, ...
            }
        }
        if tuples.len() < 2 {
            return Err(format!("expected 2 tuples, found {}", tuples.len()));
        }
        let o = &tuples[0];
        let r = &tuples[1];
        Ok(CtEntry {
            family,
            proto,
            protonum,
            timeout,
            state,
            src: o.src.ok_or("no src")?,
            dst: o.dst.ok_or("no dst")?,
            sport: o.sport,
            dport: o.dport,
            icmp: match (o.itype, o.icode, o.iid) {
                (Some(t), Some(c), Some(i)) => Some((t, c, i)),
                _ => None,
            },
            reply_src: r.src.ok_or("no reply src")?,
            reply_dst: r.dst.ok_or("no reply dst")?,
            reply_sport: r.sport,
            reply_dport: r.dport,
            assured,
            unreplied,
            mark: mark.ok_or("no mark=")?,
            id: id.ok_or("no conntrack id (after mark=)")?,
        })
    }
}

pub fn ids(entries: &[CtEntry]) -> BTreeSet<u32> {
    entries.iter().map(|e| e.id).collect()
}
