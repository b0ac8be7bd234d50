use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use hickory_resolver::proto::op::{Message, OpCode, Query};
use hickory_resolver::proto::rr::rdata::A;
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};

use super::*;
use crate::flow::model::Owner;
use crate::flow::table::{Change, TableConfig};
use crate::names::capture::{CaptureKind, NameCapture};

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const SERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 9);

/// An established TCP flow from CLIENT:sport to SERVER:80, as a dump
/// without timeouts or counters reads it.
fn flow(id: u32, sport: u16) -> Flow {
    Flow {
        timeout: None,
        counters: None,
        ..Flow::test_tcp(id, IpAddr::V4(CLIENT), IpAddr::V4(SERVER), sport)
    }
}

fn answer(qname: &str) -> NameCapture {
    answer_for(qname, SERVER)
}

fn answer_for(qname: &str, addr: Ipv4Addr) -> NameCapture {
    let mut m = Message::response(1, OpCode::Query);
    let n = Name::from_ascii(qname).unwrap();
    m.add_query(Query::query(n.clone(), RecordType::A));
    m.add_answer(Record::from_rdata(n, 300, RData::A(A(addr))));
    NameCapture {
        kind: CaptureKind::Dns,
        cookie: 1,
        netns_cookie: 0,
        protocol: 17,
        local: "127.0.0.1:5000".parse().unwrap(),
        remote: "127.0.0.53:53".parse().unwrap(),
        seq: 0,
        tcp: false,
        syn: false,
        truncated: false,
        bytes: m.to_vec().unwrap().into(),
    }
}

fn request(sport: u16, host: &str) -> NameCapture {
    NameCapture {
        kind: CaptureKind::Stream,
        protocol: 6,
        local: SocketAddr::new(IpAddr::V4(CLIENT), sport),
        remote: SocketAddr::new(IpAddr::V4(SERVER), 80),
        bytes: format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n")
            .into_bytes()
            .into(),
        ..answer("x.")
    }
}

fn owner(pid: u32) -> Option<Arc<Owner>> {
    Some(Arc::new(Owner {
        pid,
        ..Owner::default()
    }))
}

/// The flow's name as its lines say it: (name, source).
fn named(e: &Entry) -> Option<(String, &'static str)> {
    e.name.as_ref().map(|n| (n.name.to_string(), n.source.as_str()))
}

/// Adds a flow as a NEW event with the tracker asked, as the engine does.
fn add(
    table: &mut FlowTable,
    names: &NameTracker,
    waiting: &mut VecDeque<(Instant, FlowKey)>,
    f: Flow,
    now: Instant,
) -> Vec<(EventKind, Option<(String, &'static str)>)> {
    let mut lines = Vec::new();
    let mut owners = None;
    let mut lookups = Lookups {
        owners: &mut owners,
        names: Some(names),
    };
    table.apply_event(Change::Seen, f, now, &mut lookups, &mut |k, e| {
        if k == EventKind::New {
            wait_for_name(waiting, e, now);
        }
        lines.push((k, named(e)));
    });
    lines
}

/// Runs [`rename_waiting`] for `recheck`; the lines it gave.
fn rename(
    table: &mut FlowTable,
    names: &NameTracker,
    waiting: &mut VecDeque<(Instant, FlowKey)>,
    now: Instant,
    recheck: Recheck,
) -> Vec<(EventKind, Option<(String, &'static str)>)> {
    let mut lines = Vec::new();
    rename_waiting(table, names, waiting, now, &recheck, &mut |k, e| {
        lines.push((k, named(e)))
    });
    lines
}

fn everything() -> Recheck {
    Recheck::Named(Changes {
        all: true,
        ..Changes::default()
    })
}

#[test]
fn a_known_answer_names_the_first_line_and_a_late_one_comes_as_an_update() {
    let t0 = Instant::now();
    let mut table = FlowTable::new(TableConfig::default(), t0);
    let mut names = NameTracker::new(1);
    let mut waiting = VecDeque::new();
    names.on_captures([(answer("known.example."), None)], t0);
    let lines = add(&mut table, &names, &mut waiting, flow(1, 40000), t0);
    assert_eq!(
        lines,
        vec![(EventKind::New, Some(("known.example".into(), "dns")))]
    );
    // Its connection's own name, later: an update, and it stops waiting.
    let t1 = t0 + Duration::from_millis(100);
    assert!(names.on_captures([(request(40000, "own.example"), owner(7))], t1));
    let changes = Recheck::Named(names.take_changes());
    let lines = rename(&mut table, &names, &mut waiting, t1, changes);
    assert_eq!(
        lines,
        vec![(EventKind::Update, Some(("own.example".into(), "http")))]
    );
    assert!(waiting.is_empty());
}

#[test]
fn an_answer_that_reaches_the_engine_after_the_new_event_is_an_update() {
    let t0 = Instant::now();
    let mut table = FlowTable::new(TableConfig::default(), t0);
    let mut names = NameTracker::new(1);
    let mut waiting = VecDeque::new();
    let lines = add(&mut table, &names, &mut waiting, flow(1, 40000), t0);
    assert_eq!(lines, vec![(EventKind::New, None)]);
    let t1 = t0 + Duration::from_millis(200);
    names.on_captures([(answer("late.example."), owner(7))], t1);
    let changes = Recheck::Named(names.take_changes());
    let lines = rename(&mut table, &names, &mut waiting, t1, changes);
    assert_eq!(
        lines,
        vec![(EventKind::Update, Some(("late.example".into(), "dns")))]
    );
    // Nothing changed: no second update; it still waits (a name of its own
    // may come).
    assert_eq!(rename(&mut table, &names, &mut waiting, t1, everything()), vec![]);
    assert_eq!(waiting.len(), 1);
    // After the wait the flow is no longer looked at.
    rename(&mut table, &names, &mut waiting, t0 + NAME_WAIT * 2, everything());
    assert!(waiting.is_empty());
}

#[test]
fn answers_for_other_addresses_leave_flows_alone() {
    let t0 = Instant::now();
    let mut table = FlowTable::new(TableConfig::default(), t0);
    let mut names = NameTracker::new(1);
    let mut waiting = VecDeque::new();
    add(&mut table, &names, &mut waiting, flow(1, 40000), t0);
    let other = answer_for("other.example.", Ipv4Addr::new(198, 51, 100, 1));
    names.on_captures([(other, None)], t0);
    let changes = names.take_changes();
    assert!(!changes.is_empty() && !changes.all);
    assert_eq!(
        rename(&mut table, &names, &mut waiting, t0, Recheck::Named(changes)),
        vec![]
    );
    assert_eq!(waiting.len(), 1);
    // Had it been looked at, the host-wide answer would name it.
    assert_eq!(
        rename(&mut table, &names, &mut waiting, t0, everything()).len(),
        0
    );
}

#[test]
fn an_owner_found_later_brings_its_own_processs_answer() {
    let t0 = Instant::now();
    let mut table = FlowTable::new(TableConfig::default(), t0);
    let mut names = NameTracker::new(1);
    let mut waiting = VecDeque::new();
    // Process 7 asked for mine.example, then process 8 for other.example
    // (the newest host-wide answer) at the same address.
    names.on_captures([(answer("mine.example."), owner(7))], t0);
    names.on_captures(
        [(answer("other.example."), owner(8))],
        t0 + Duration::from_millis(10),
    );
    let t1 = t0 + Duration::from_millis(20);
    let lines = add(&mut table, &names, &mut waiting, flow(1, 40000), t1);
    assert_eq!(
        lines,
        vec![(EventKind::New, Some(("other.example".into(), "dns")))]
    );
    let key = flow(1, 40000).key();
    let found = crate::flow::model::Attributed {
        owner: owner(7),
        peer: None,
        direction: Some(crate::flow::model::Direction::Out),
    };
    table.set_owners(vec![(key, found)], &mut |_, _| ());
    let recheck = Recheck::Owned([key].into_iter().collect());
    let lines = rename(&mut table, &names, &mut waiting, t1, recheck);
    assert_eq!(
        lines,
        vec![(EventKind::Update, Some(("mine.example".into(), "dns")))]
    );
}

#[test]
fn the_waiting_list_is_bounded() {
    let t0 = Instant::now();
    let mut table = FlowTable::new(TableConfig::default(), t0);
    let names = NameTracker::new(1);
    let mut waiting = VecDeque::new();
    for i in 0..(NAME_WAITING_MAX as u32 + 10) {
        add(
            &mut table,
            &names,
            &mut waiting,
            flow(i + 1, (i % 60000) as u16 + 1),
            t0,
        );
    }
    assert_eq!(waiting.len(), NAME_WAITING_MAX);
}
