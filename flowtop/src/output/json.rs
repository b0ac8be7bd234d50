//! The `--json` contract: one object per line. Field names are public: add,
//! never rename (see README, "JSON schema").

use std::io::{self, Write};
use std::net::IpAddr;
use std::time::SystemTime;

use serde::Serialize;

use super::format::{age_secs, rfc3339, rfc3339_ns};
use crate::flow::model::proto;
use crate::flow::table::{Entry, EventKind, TableStats};

/// A protocol: its name, or its number when flowtop has none.
#[derive(Serialize)]
#[serde(untagged)]
enum Proto {
    Name(&'static str),
    Number(u8),
}

fn ip<S: serde::Serializer>(a: &IpAddr, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(a)
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// One flow event.
#[derive(Serialize)]
struct FlowLine<'a> {
    event: &'static str,
    ts: &'a str,
    id: u32,
    family: &'static str,
    proto: Proto,
    state: Option<&'static str>,
    #[serde(serialize_with = "ip")]
    src: &'a IpAddr,
    sport: Option<u16>,
    #[serde(serialize_with = "ip")]
    dst: &'a IpAddr,
    dport: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    icmp_type: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    icmp_code: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    icmp_id: Option<u16>,
    #[serde(serialize_with = "ip")]
    reply_src: &'a IpAddr,
    reply_sport: Option<u16>,
    #[serde(serialize_with = "ip")]
    reply_dst: &'a IpAddr,
    reply_dport: Option<u16>,
    status: Vec<&'static str>,
    mark: u32,
    zone: u16,
    timeout: Option<u32>,
    orig_packets: Option<u64>,
    orig_bytes: Option<u64>,
    reply_packets: Option<u64>,
    reply_bytes: Option<u64>,
    start: Option<String>,
    duration_s: Option<u64>,
    orig_rate_bps: Option<f64>,
    reply_rate_bps: Option<f64>,
    orig_rate_pps: Option<f64>,
    reply_rate_pps: Option<f64>,
    // Filled by later stages (attribution, enrichment); null until then.
    pid: Option<u32>,
    comm: Option<&'a str>,
    exe: Option<&'a str>,
    uid: Option<u32>,
    attribution: Option<&'a str>,
    src_host: Option<&'a str>,
    dst_host: Option<&'a str>,
    src_country: Option<&'a str>,
    src_city: Option<&'a str>,
    dst_country: Option<&'a str>,
    dst_city: Option<&'a str>,
    service: Option<&'a str>,
}

/// Writes JSON lines to any writer; the caller flushes per batch.
pub struct JsonWriter<W: Write> {
    out: W,
}

impl<W: Write> JsonWriter<W> {
    pub fn new(out: W) -> Self {
        JsonWriter { out }
    }

    pub fn into_inner(self) -> W {
        self.out
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Writes one raw JSON value as a line.
    pub fn value(&mut self, v: &serde_json::Value) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, v)?;
        self.out.write_all(b"\n")
    }

    /// Writes one flow event.
    pub fn flow(&mut self, kind: EventKind, e: &Entry, ts: &str, now: SystemTime) -> io::Result<()> {
        let f = &e.flow;
        let icmp = f.orig.icmp;
        let c = f.counters;
        let rates = e.rate.measured_rates();
        let line = FlowLine {
            event: kind.name(),
            ts,
            id: f.id,
            family: f.family.name(),
            proto: proto::name(f.proto).map_or(Proto::Number(f.proto), Proto::Name),
            state: f.state.map(|s| s.name()),
            src: &f.orig.src,
            sport: f.orig.sport,
            dst: &f.orig.dst,
            dport: f.orig.dport,
            icmp_type: icmp.map(|i| i.icmp_type),
            icmp_code: icmp.map(|i| i.code),
            icmp_id: icmp.map(|i| i.id),
            reply_src: &f.reply.src,
            reply_sport: f.reply.sport,
            reply_dst: &f.reply.dst,
            reply_dport: f.reply.dport,
            status: f.status_names().collect(),
            mark: f.mark,
            zone: f.zone,
            timeout: f.timeout,
            orig_packets: c.map(|c| c.orig_packets),
            orig_bytes: c.map(|c| c.orig_bytes),
            reply_packets: c.map(|c| c.reply_packets),
            reply_bytes: c.map(|c| c.reply_bytes),
            start: f.start_ns.map(rfc3339_ns),
            duration_s: f.start_ns.map(|s| age_secs(s, now)),
            orig_rate_bps: rates.map(|r| round3(r.orig_bytes)),
            reply_rate_bps: rates.map(|r| round3(r.reply_bytes)),
            orig_rate_pps: rates.map(|r| round3(r.orig_packets)),
            reply_rate_pps: rates.map(|r| round3(r.reply_packets)),
            pid: None,
            comm: None,
            exe: None,
            uid: None,
            attribution: None,
            src_host: None,
            dst_host: None,
            src_country: None,
            src_city: None,
            dst_country: None,
            dst_city: None,
            service: None,
        };
        serde_json::to_writer(&mut self.out, &line)?;
        self.out.write_all(b"\n")
    }

    /// Writes a `stats` line: the engine's health counters.
    pub fn stats(&mut self, ts: &str, flows: usize, stats: &TableStats, rcvbuf: usize) -> io::Result<()> {
        let v = serde_json::json!({
            "event": "stats",
            "ts": ts,
            "flows": flows,
            "dumps": stats.dumps,
            "overruns": stats.overruns,
            "resyncs": stats.resyncs,
            "swept": stats.swept,
            "expired": stats.expired,
            "malformed": stats.malformed,
            "rcvbuf": rcvbuf,
        });
        self.value(&v)
    }
}

/// The current time as the `ts` field shows it.
pub fn now_ts() -> (String, SystemTime) {
    let now = SystemTime::now();
    (rfc3339(now), now)
}
