//! Tests of the pictures (issue 18): the Processes tab's TREND column, the
//! header's graphs, the open flow's rate chart and the History timeline,
//! as reviewed frames at two sizes and without colour in an ASCII locale.

use std::sync::Arc;

use ratatui::backend::TestBackend;
use ratatui::Terminal;

use super::app::{App, Tab};
use super::fixture::{self, app, flow, now, owner, Spec};
use super::history::Loaded;
use super::keys::{self, Action, Mode};
use super::render;
use super::rows::ProcKey;
use super::spark::Glyphs;
use crate::attribution::How;
use crate::flow::model::proto;
use crate::flow::table::Snapshot;
use crate::journal::query::Flow as Recorded;

fn screen(app: &App, w: u16, h: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(w, h)).expect("test terminal");
    t.draw(|f| render::draw(f, app, now())).expect("draw");
    t.backend().to_string()
}

/// Round `r` of a bursty program, a steady one and a receiver: `burst`
/// sends 400 KB/s one interval in four and nothing in between, `steady`
/// 50 KB/s always, `sink` receives 20 KB/s growing.
fn round(r: u64) -> Arc<Snapshot> {
    round_with(r, true)
}

/// [`round`], without the bursty flow when `burst` is false (it left).
fn round_with(r: u64, with_burst: bool) -> Arc<Snapshot> {
    let burst = owner(700, "burst", "/usr/local/bin/burst", How::Ebpf);
    let steady = owner(701, "steady", "/usr/bin/steady", How::Ebpf);
    let sink = owner(702, "sink", "/usr/bin/sink", How::Ebpf);
    let b = if r.is_multiple_of(4) { 800_000 } else { 0 };
    let specs: Vec<Spec> = vec![
        (
            flow(1, proto::TCP, "192.0.2.1", Some(40001), "198.51.100.7", Some(443)),
            (1_000, 0),
            (1_000 + b, 0),
            Some(burst),
        ),
        (
            flow(2, proto::TCP, "192.0.2.1", Some(40002), "198.51.100.8", Some(443)),
            (1_000, 0),
            (101_000, 0),
            Some(steady),
        ),
        (
            flow(3, proto::TCP, "192.0.2.1", Some(40003), "198.51.100.9", Some(443)),
            (0, 1_000),
            (0, 1_000 + 40_000 * (r % 10 + 1)),
            Some(sink),
        ),
    ];
    let specs = specs.into_iter().filter(|s| with_burst || s.0.id != 1).collect();
    fixture::snapshot(specs)
}

/// The Processes tab after `n` rounds (each snapshot a new interval).
fn processes_after(n: u64, w: u16, h: u16) -> App {
    let mut a = app(w, h);
    a.apply(Action::NextTab);
    assert_eq!(a.tab, Tab::Processes);
    for r in 0..n {
        a.on_snapshot(round(r));
    }
    a
}

fn ascii(a: &mut App) {
    a.color = false;
    a.glyphs = Glyphs::Ascii;
}

fn prog(exe: &str) -> ProcKey {
    ProcKey::Program(exe.into(), 1000)
}

#[test]
fn m_toggles_the_meter() {
    let m = keys::action(
        crossterm::event::KeyEvent::new(
            crossterm::event::KeyCode::Char('m'),
            crossterm::event::KeyModifiers::NONE,
        ),
        Mode::Normal,
    );
    assert_eq!(m, Some(Action::ToggleMeter));
    let mut a = app(160, 10);
    assert!(a.meter);
    a.apply(Action::ToggleMeter);
    assert!(!a.meter);
}

#[test]
fn the_trend_column_follows_each_group_once_per_snapshot() {
    let mut a = processes_after(12, 140, 12);
    let h = &a.rate_history;
    assert_eq!(h.len(), 3);
    let line = h
        .sparkline(&prog("/usr/local/bin/burst"), 13, Glyphs::Ascii)
        .expect("burst has a history");
    // One interval in four, marked as sending.
    assert_eq!(line, "^#   #   #   ");
    let steady = h.sparkline(&prog("/usr/bin/steady"), 5, Glyphs::Ascii);
    assert_eq!(steady.as_deref(), Some("^####"));
    let sink = h.sparkline(&prog("/usr/bin/sink"), 3, Glyphs::Ascii);
    assert!(sink.is_some_and(|s| s.starts_with('v')), "the sink receives");
    // Keys rebuild rows for the same snapshot: no sample.
    let before = a.totals_history.rounds();
    a.apply(Action::SortNext);
    a.apply(Action::ToggleActive);
    a.apply(Action::ToggleActive);
    assert_eq!(a.totals_history.rounds(), before);
    // The screen shows it, in the row of its group.
    let s = screen(&a, 140, 12);
    let row = s.lines().find(|l| l.contains("burst")).expect("burst row");
    assert!(
        row.contains("↑ ") && row.contains("█   █   █    /usr/local"),
        "{s}"
    );
}

#[test]
fn the_trend_survives_pids_coming_and_going() {
    let mut a = processes_after(4, 140, 12);
    // The same program under another pid: the same group, same history.
    let other = owner(9999, "burst", "/usr/local/bin/burst", How::Ebpf);
    let spec: Spec = (
        flow(9, proto::TCP, "192.0.2.1", Some(40009), "198.51.100.7", Some(443)),
        (0, 0),
        (800_000, 0),
        Some(other),
    );
    a.on_snapshot(fixture::snapshot(vec![spec]));
    let line = a
        .rate_history
        .sparkline(&prog("/usr/local/bin/burst"), 6, Glyphs::Ascii)
        .expect("kept");
    assert_eq!(line, "^#   #");
    // The other groups, gone from the table, go idle: zeros, then dropped.
    for _ in 0..80 {
        a.on_snapshot(fixture::snapshot(Vec::new()));
    }
    assert!(a.rate_history.is_empty(), "idle groups are dropped");
}

#[test]
fn frames_of_the_trend_column() {
    let a = processes_after(24, 120, 10);
    insta::assert_snapshot!("trend_120x10", screen(&a, 120, 10));
    let a = processes_after(24, 190, 10);
    insta::assert_snapshot!("trend_190x10", screen(&a, 190, 10));
    let mut a = processes_after(24, 120, 10);
    ascii(&mut a);
    let s = screen(&a, 120, 10);
    assert!(s.is_ascii(), "{s}");
    insta::assert_snapshot!("trend_ascii_no_color_120x10", s);
    // Narrow: the numbers stay, the column goes.
    let a = processes_after(24, 80, 10);
    let s = screen(&a, 80, 10);
    assert!(!s.contains("TREND") && s.contains("RECV/s"), "{s}");
}

#[test]
fn frames_of_the_header_graph() {
    let mut a = app(160, 8);
    for r in 0..16 {
        a.on_snapshot(round(r));
    }
    insta::assert_snapshot!("meter_160x8", screen(&a, 160, 8));
    // Less room: fewer intervals.
    insta::assert_snapshot!("meter_150x8", screen(&a, 150, 8));
    ascii(&mut a);
    insta::assert_snapshot!("meter_ascii_no_color_160x8", screen(&a, 160, 8));
    // `m` hides it; a narrow terminal has no room for it.
    a.apply(Action::ToggleMeter);
    let s = screen(&a, 160, 8);
    assert!(
        s.lines()
            .next()
            .is_some_and(|l| l.contains("in 117KB/s out 49KB/s |")),
        "{s}"
    );
    a.apply(Action::ToggleMeter);
    let s = screen(&a, 100, 8);
    assert!(!s.lines().next().unwrap_or_default().contains('#'), "{s}");
}

/// The Flows tab with the details of the bursty flow open, and a minute
/// of its rates.
fn detail_with_trace(w: u16, h: u16) -> App {
    let mut a = app(w, h);
    a.on_snapshot(round(0));
    let i = (0..a.len())
        .find(|&i| a.flow_at(i).is_some_and(|e| e.flow.id == 1))
        .expect("the burst flow");
    a.move_for_test(i);
    a.apply(Action::Open);
    assert_eq!(a.mode(), Mode::Detail);
    let d = a.detail.as_mut().expect("details open");
    d.trace = Default::default();
    let t0 = 1_700_000_100.0;
    for s in 0..60u32 {
        let orig = if s % 10 < 3 { 400_000.0 } else { 1_000.0 };
        d.trace.push(t0 + f64::from(s), orig, f64::from(s) * 1_000.0);
    }
    a
}

#[test]
fn the_detail_chart_takes_a_point_per_snapshot() {
    let mut a = app(160, 30);
    a.on_snapshot(round(1));
    let i = (0..a.len())
        .find(|&i| a.flow_at(i).is_some_and(|e| e.flow.id == 2))
        .expect("steady");
    a.move_for_test(i);
    a.apply(Action::Open);
    // Opened on the flow's kept history (one sample so far), then a
    // point per new snapshot, none for a redraw.
    let d = a.detail.as_ref().expect("open");
    assert_eq!((d.trace.past.len(), d.trace.points.len()), (1, 0));
    a.on_snapshot(round(2));
    a.on_snapshot(round(3));
    let _ = screen(&a, 160, 30);
    let d = a.detail.as_ref().expect("open");
    assert_eq!(d.trace.points.len(), 2);
    assert!(d.trace.points.iter().all(|p| p.1 == 50_000.0), "{:?}", d.trace);
    // Closed and opened again: the chart starts from the flow's history,
    // the three snapshots it moved in (quantised: within 5 %).
    a.apply(Action::Back);
    a.apply(Action::Open);
    let d = a.detail.as_ref().expect("open");
    assert_eq!((d.trace.past.len(), d.trace.points.len()), (3, 0));
    assert!(
        d.trace
            .past
            .iter()
            .all(|p| (p.1 - 50_000.0).abs() < 2_500.0 && p.2 == 0.0),
        "{:?}",
        d.trace
    );
}

/// `snap` with the flows `ids` of [`round`] listed as ended in it.
fn with_ended(snap: Arc<Snapshot>, ids: &[u32]) -> Arc<Snapshot> {
    let mut s = Arc::try_unwrap(snap).expect("a fresh snapshot");
    let s0 = round(0);
    let flows = s0
        .flows
        .slots()
        .filter(|(_, e)| ids.contains(&e.flow.id))
        .map(|(_, e)| (e.clone(), Default::default()))
        .collect();
    s.ended = Arc::new(crate::flow::table::EndedFlows {
        flows,
        ..Default::default()
    });
    Arc::new(s)
}

/// Every flow that moves gets a history whatever the tab; a flow listed
/// as ended loses it at the next sweep, unless it is still shown dimmed
/// or its details are open.
#[test]
fn flow_histories_follow_the_flows_of_the_table() {
    let mut a = processes_after(5, 160, 30);
    let s0 = round(0);
    let key = |id: u32| {
        s0.flows
            .slots()
            .find(|(_, e)| e.flow.id == id)
            .map(|(_, e)| e.flow.key())
            .expect("flow")
    };
    let (burst, steady, sink) = (key(1), key(2), key(3));
    assert!([burst, steady, sink]
        .iter()
        .all(|k| a.flow_history.get(k).is_some()));
    // The burst flow leaves; shown dimmed for now: kept through a sweep.
    a.on_snapshot(with_ended(round_with(5, false), &[1]));
    assert_eq!(a.recent_ended.len(), 1);
    for r in 6..25 {
        a.on_snapshot(round_with(r, false));
    }
    assert!(a.flow_history.get(&burst).is_some(), "kept while shown dimmed");
    // No longer shown: gone at the next sweep; the flows still there stay.
    a.recent_ended = Default::default();
    for r in 25..45 {
        a.on_snapshot(round_with(r, false));
    }
    assert!(a.flow_history.get(&burst).is_none(), "dropped once gone");
    assert!(a.flow_history.get(&steady).is_some() && a.flow_history.get(&sink).is_some());
    // The open flow keeps its history after it left.
    a.apply(Action::PrevTab);
    let i = (0..a.len())
        .find(|&i| a.flow_at(i).is_some_and(|e| e.flow.id == 2))
        .expect("steady");
    a.move_for_test(i);
    a.apply(Action::Open);
    a.on_snapshot(with_ended(fixture::snapshot(Vec::new()), &[2, 3]));
    a.recent_ended = Default::default();
    for _ in 0..20 {
        a.on_snapshot(fixture::snapshot(Vec::new()));
    }
    let d = a.detail.as_ref().expect("open");
    assert!(d.ended);
    assert!(
        a.flow_history.get(&steady).is_some(),
        "kept while its details are open"
    );
    assert!(a.flow_history.get(&sink).is_none(), "the other one went");
    // Closed: gone at the next sweep.
    a.apply(Action::Back);
    for _ in 0..20 {
        a.on_snapshot(fixture::snapshot(Vec::new()));
    }
    assert!(a.flow_history.get(&steady).is_none());
}

/// The wall clock of [`chart_opened_late`]: a second per snapshot.
static CLOCK: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn test_clock() -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_secs(CLOCK.load(std::sync::atomic::Ordering::Relaxed))
}

/// The Flows tab after 200 snapshots a second apart, with the details of
/// the bursty flow opened then, and 10 more snapshots since.
fn chart_opened_late(w: u16, h: u16) -> App {
    let mut a = app(w, h);
    a.wall = test_clock;
    // From the flow's start (22:13:30 UTC).
    let t0 = 1_700_000_010;
    for r in 0..200 {
        CLOCK.store(t0 + r, std::sync::atomic::Ordering::Relaxed);
        a.on_snapshot(round(r));
    }
    let i = (0..a.len())
        .find(|&i| a.flow_at(i).is_some_and(|e| e.flow.id == 1))
        .expect("the burst flow");
    a.move_for_test(i);
    a.apply(Action::Open);
    for r in 200..210 {
        CLOCK.store(t0 + r, std::sync::atomic::Ordering::Relaxed);
        a.on_snapshot(round(r));
    }
    a
}

#[test]
fn the_detail_chart_starts_when_the_flow_first_moved() {
    let a = chart_opened_late(100, 44);
    let d = a.detail.as_ref().expect("open");
    // The past: 200 rounds in at most 40 buckets, the open one and the
    // last 32 one by one; then the 10 live points.
    assert!(d.trace.past.len() <= 40 + 1 + 32, "{}", d.trace.past.len());
    assert_eq!(d.trace.points.len(), 10);
    assert_eq!(d.trace.past.first().map(|p| p.0), Some(1_700_000_010.0));
    assert_eq!(d.trace.points.back().map(|p| p.0), Some(1_700_000_219.0));
    // Times only grow, past into live.
    let t: Vec<f64> = d.trace.all().map(|p| p.0).collect();
    assert!(t.windows(2).all(|w| w[0] < w[1]), "{t:?}");
    // The burst's peaks (800 KB in an interval one in four) survive in
    // the recent part; older buckets average them.
    let recent_max = d
        .trace
        .past
        .iter()
        .rev()
        .take(32)
        .map(|p| p.1)
        .fold(0.0, f64::max);
    let old_max = d.trace.past.iter().take(20).map(|p| p.1).fold(0.0, f64::max);
    assert!(old_max < recent_max, "{old_max} vs {recent_max}");
    let s = screen(&a, 100, 44);
    assert!(s.contains("Rate since 22:13:30"), "{s}");
    insta::assert_snapshot!("chart_opened_late_100x44", s);
}

#[test]
fn frames_of_the_detail_chart() {
    // Wide: beside the lines; tall: under them.
    insta::assert_snapshot!(
        "chart_beside_160x30",
        screen(&detail_with_trace(160, 30), 160, 30)
    );
    insta::assert_snapshot!("chart_under_100x44", screen(&detail_with_trace(100, 44), 100, 44));
    let mut a = detail_with_trace(100, 44);
    ascii(&mut a);
    let s = screen(&a, 100, 44);
    assert!(s.is_ascii(), "{s}");
    insta::assert_snapshot!("chart_ascii_no_color_100x44", s);
    // A small terminal keeps the lines and draws no chart.
    let s = screen(&detail_with_trace(100, 24), 100, 24);
    assert!(!s.contains("Rate since"), "{s}");
}

/// Recorded flows of two programs: curl to three destinations over ten
/// minutes, one of them three times; sshd once.
fn recorded() -> Vec<Recorded> {
    let t = 1_700_000_000_000i64;
    let f =
        |id: u32, exe: &str, comm: &str, dst: [u8; 4], name: Option<&str>, start: i64, secs: i64| Recorded {
            ct_id: id,
            proto: proto::TCP,
            src: Some("192.0.2.1".parse().expect("ip")),
            dst: Some(std::net::IpAddr::from(dst)),
            sport: Some(40000 + id as u16),
            dport: Some(443),
            direction: Some("out".into()),
            start_ms: t + start * 1000,
            end_ms: Some(t + (start + secs) * 1000),
            orig_bytes: Some(1000),
            reply_bytes: Some(2000),
            pid: Some(4242),
            comm: Some(comm.into()),
            exe: Some(exe.into()),
            dst_name: name.map(str::to_owned),
            dst_name_source: name.map(|_| "sni".to_owned()),
            ..Default::default()
        };
    vec![
        f(
            1,
            "/usr/bin/curl",
            "curl",
            [198, 51, 100, 7],
            Some("api.example.com"),
            0,
            30,
        ),
        f(
            2,
            "/usr/bin/curl",
            "curl",
            [198, 51, 100, 8],
            Some("cdn.example.net"),
            60,
            240,
        ),
        f(
            3,
            "/usr/bin/curl",
            "curl",
            [198, 51, 100, 7],
            Some("api.example.com"),
            300,
            5,
        ),
        f(4, "/usr/bin/curl", "curl", [192, 0, 2, 77], None, 420, 1),
        f(
            5,
            "/usr/bin/curl",
            "curl",
            [198, 51, 100, 7],
            Some("api.example.com"),
            590,
            10,
        ),
        f(6, "/usr/sbin/sshd", "sshd", [203, 0, 113, 9], None, 100, 100),
    ]
}

fn timeline(w: u16, h: u16) -> App {
    let mut a = app(w, h);
    a.apply(Action::NextTab);
    a.apply(Action::NextTab);
    a.apply(Action::NextTab);
    assert_eq!(a.tab, Tab::History);
    a.history_loaded(Loaded::Flows(recorded()));
    let i = (0..a.len())
        .find(|&i| a.history.flow_at(i).is_some_and(|f| f.ct_id == 1))
        .expect("curl's first flow");
    a.move_for_test(i);
    a.apply(Action::Open);
    assert_eq!(a.mode(), Mode::Recorded);
    a.apply(Action::Open);
    assert!(a.timeline.is_some());
    assert_eq!(a.mode(), Mode::Detail);
    a
}

#[test]
fn the_timeline_groups_a_programs_flows_by_destination() {
    let mut a = timeline(120, 16);
    let s = screen(&a, 120, 16);
    assert!(s.contains("5 flows of /usr/bin/curl to 3 destinations"), "{s}");
    assert!(s.contains("*api.example.com (3)"), "{s}");
    assert!(!s.contains("203.0.113.9"), "sshd's flow is not curl's: {s}");
    // Esc goes back to the recorded flow, then to the table.
    a.apply(Action::Back);
    assert!(a.timeline.is_none() && a.history_detail.is_some());
    a.apply(Action::Back);
    assert_eq!(a.mode(), Mode::Normal);
}

#[test]
fn frames_of_the_timeline() {
    insta::assert_snapshot!("timeline_120x12", screen(&timeline(120, 12), 120, 12));
    insta::assert_snapshot!("timeline_60x9", screen(&timeline(60, 9), 60, 9));
    let mut a = timeline(120, 12);
    ascii(&mut a);
    insta::assert_snapshot!("timeline_ascii_no_color_120x12", screen(&a, 120, 12));
}

#[test]
fn widths_of_the_trend_and_the_meter_follow_the_terminal() {
    use super::spark::{meter_width, trend_width, SAMPLES};
    assert_eq!(trend_width(80), 0);
    assert_eq!(trend_width(115), 0, "below 6 columns: none");
    assert_eq!(trend_width(120), 9);
    assert_eq!(trend_width(300), SAMPLES + 1);
    assert_eq!(meter_width(100), 0);
    assert!(meter_width(120) > 0 && meter_width(120) < meter_width(200));
}

#[test]
fn asciify_maps_what_the_widgets_draw() {
    use ratatui::buffer::Buffer;
    use ratatui::layout::Rect;
    let area = Rect::new(0, 0, 12, 1);
    let mut buf = Buffer::empty(area);
    buf.set_string(0, 0, "│─└•█▁▼↑→⠁é", ratatui::style::Style::default());
    super::charts::asciify(&mut buf, area);
    let line: String = (0..12).map(|x| buf[(x, 0)].symbol().to_owned()).collect();
    assert_eq!(line, "|-+*#.v^>.? ");
}

#[test]
fn every_picture_draws_at_any_size() {
    let apps = [
        processes_after(10, 40, 8),
        detail_with_trace(40, 8),
        timeline(40, 8),
    ];
    for mut a in apps {
        for g in [Glyphs::Unicode, Glyphs::Ascii] {
            a.glyphs = g;
            for w in [1u16, 20, 40, 41, 60, 99, 100, 119, 120, 150, 151, 250] {
                for h in [1u16, 5, 8, 9, 20, 30, 60] {
                    // Nothing panics or overflows, whatever the size.
                    a.resize(w, h);
                    let _ = screen(&a, w, h);
                }
            }
        }
    }
}
