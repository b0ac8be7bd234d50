//! flowtop's `--json` stream folded into one record per flow.

use std::collections::BTreeMap;

use serde_json::Value;

/// Everything flowtop said about one flow (one conntrack id).
#[derive(Debug, Clone)]
pub struct Merged {
    /// The flow's latest line (its tuple, protocol, ICMP id).
    pub json: Value,
    /// The latest owner shown: (pid, comm).
    pub owner: Option<(u32, String)>,
    /// How that owner was found (`attribution`: `ebpf`, `netns`, ...).
    pub attribution: Option<String>,
    /// The largest orig + reply byte count shown (counters only grow; the
    /// destroy event carries the final ones).
    pub bytes: u64,
    /// The events flowtop printed for it, in order (`new`, `update`, ...).
    pub events: Vec<String>,
}

/// One [`Merged`] per flow id, in id order; lines without an id (the meta
/// line) and non-JSON lines are skipped.
pub fn merge(stdout: &str) -> Vec<Merged> {
    let mut by_id: BTreeMap<u64, Merged> = BTreeMap::new();
    for line in stdout.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let Some(id) = v.get("id").and_then(Value::as_u64) else {
            continue;
        };
        let n = |k: &str| v.get(k).and_then(Value::as_u64);
        let bytes = n("orig_bytes").unwrap_or(0) + n("reply_bytes").unwrap_or(0);
        let owner = n("pid").and_then(|p| {
            let comm = v.get("comm").and_then(Value::as_str).unwrap_or_default();
            Some((u32::try_from(p).ok()?, comm.to_owned()))
        });
        let m = by_id.entry(id).or_insert_with(|| Merged {
            json: Value::Null,
            owner: None,
            attribution: None,
            bytes: 0,
            events: Vec::new(),
        });
        let event = v.get("event").and_then(Value::as_str).unwrap_or("?");
        m.events.push(event.to_owned());
        m.bytes = m.bytes.max(bytes);
        if owner.is_some() {
            m.owner = owner;
            m.attribution = v.get("attribution").and_then(Value::as_str).map(str::to_owned);
        }
        m.json = v;
    }
    by_id.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_owner_and_the_largest_counters_survive_later_lines() {
        let stream = r#"{"event":"meta"}
{"event":"new","id":7,"proto":"tcp","pid":null,"comm":null,"orig_bytes":null,"reply_bytes":null}
{"event":"update","id":7,"proto":"tcp","pid":42,"comm":"sc-x","attribution":"netns","orig_bytes":100,"reply_bytes":50}
{"event":"destroy","id":7,"proto":"tcp","pid":null,"comm":null,"orig_bytes":120,"reply_bytes":60}
not json
{"event":"new","id":8,"proto":"udp","pid":1,"comm":"other","orig_bytes":5,"reply_bytes":0}"#;
        let m = merge(stream);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].owner, Some((42, "sc-x".into())));
        assert_eq!(m[0].attribution.as_deref(), Some("netns"));
        assert_eq!(m[0].bytes, 180);
        assert_eq!(m[1].bytes, 5);
        assert_eq!(m[0].events, ["new", "update", "destroy"]);
    }
}
