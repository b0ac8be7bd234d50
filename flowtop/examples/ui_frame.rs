//! Times the screen's work on a large synthetic table, without a terminal:
//! rows built per snapshot and per key, and one frame drawn, on ratatui's
//! TestBackend. `cargo run --release -p flowtop --example ui_frame [FLOWS]`
//! (a profiling aid next to `cargo xtask bench ui`, which measures the real
//! screen in tmux).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use flowtop::enrich::book::AddressBook;
use flowtop::enrich::services::Services;
use flowtop::flow::model::{proto, Counters, Family, Flow, Tuple};
use flowtop::flow::table::{Change, FlowTable, NoOwners, TableConfig};
use flowtop::flow::Selection;
use flowtop::ui::keys::Action;
use flowtop::ui::{App, HeaderInfo, ViewOptions};
use ratatui::backend::TestBackend;
use ratatui::Terminal;

fn flow(i: u32) -> Flow {
    let src = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));
    let dst = IpAddr::V4(Ipv4Addr::from(0xc633_6402 + i / 65_535));
    let dport = Some(u16::try_from(1 + i % 65_535).unwrap_or(1));
    Flow {
        id: i.wrapping_mul(2_654_435_761),
        family: Family::Ipv4,
        proto: proto::UDP,
        state: None,
        orig: Tuple {
            src,
            dst,
            sport: Some(40_000),
            dport,
            icmp: None,
        },
        reply: Tuple {
            src: dst,
            dst: src,
            sport: dport,
            dport: Some(40_000),
            icmp: None,
        },
        status: 8,
        mark: 0,
        zone: 0,
        timeout: Some(flowtop::flow::model::Timeout::from_secs(3600)),
        counters: Some(Counters {
            orig_packets: 1,
            orig_bytes: u64::from(i % 977),
            reply_packets: 0,
            reply_bytes: 0,
        }),
        start_ns: std::num::NonZeroU64::new(1_700_000_000_000_000_000),
    }
}

fn time<R>(what: &str, runs: u32, mut f: impl FnMut() -> R) {
    let mut v = Vec::new();
    for _ in 0..runs {
        let t0 = Instant::now();
        std::hint::black_box(f());
        v.push(t0.elapsed());
    }
    v.sort();
    println!(
        "{what:<28} p50 {:>8.2?} max {:>8.2?}",
        v[v.len() / 2],
        v[v.len() - 1]
    );
}

fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(125_000);
    let t0 = Instant::now();
    let mut table = FlowTable::new(TableConfig::default(), t0);
    for i in 0..n {
        table.apply_event(Change::Seen, flow(i), t0, &mut NoOwners, &mut |_, _| {});
    }
    let snap = table.snapshot();
    let mut sel = Selection::none().with_proto(proto::UDP);
    sel.ipv4 = true;
    let mut app = App::new(
        HeaderInfo {
            version: "bench",
            attribution: flowtop::attribution::Active::Off,
            attribution_reason: String::new(),
            interval: Duration::from_secs(1),
            inspect: true,
        },
        ViewOptions {
            selection: sel,
            show_src: false,
            bits: false,
            color: true,
        },
        AddressBook::new(),
        Arc::new(Services::builtin()),
        Default::default(),
    );
    app.resize(200, 50);
    time("snapshot (engine side)", 10, || table.snapshot());
    time("rows on a snapshot (warm)", 20, || {
        app.on_snapshot(Arc::clone(&snap))
    });
    // As in the screen: each snapshot is new memory, and the one it
    // replaces is freed.
    let mut fresh: Vec<_> = (0..20).map(|_| table.snapshot()).collect();
    time("rows on a fresh snapshot", 20, || {
        app.on_snapshot(fresh.pop().expect("one per run"))
    });

    // As the screen runs: rows built by the deriver thread, then taken by
    // the screen's thread (selection put back, visible window ordered).
    let book = AddressBook::new();
    let services = Services::builtin();
    let mut buffer = Vec::new();
    let mut derived: Vec<_> = (0..20)
        .map(|_| {
            let job = app.snapshot_job(table.snapshot()).expect("not paused");
            let ctx = flowtop::ui::rows::RowCtx {
                book: &book,
                services: &services,
            };
            flowtop::ui::derive::run_job(job, ctx, &mut buffer)
        })
        .collect();
    app.apply(Action::PageDown); // a selection below the first page
    time("screen takes derived rows", 20, || {
        app.take_derived(derived.pop().expect("one per run"))
    });
    let mut term = Terminal::new(TestBackend::new(200, 50)).expect("terminal");
    time("draw", 20, || {
        term.draw(|f| flowtop::ui::render::draw(f, &app, SystemTime::now()))
            .map(|_| ())
    });
    time("key: PgDn (new window)", 10, || app.apply(Action::PageDown));
    time("key: End, Home", 10, || {
        app.apply(Action::End);
        app.apply(Action::Home);
    });
    time("key: Tab + BackTab", 10, || {
        app.apply(Action::NextTab);
        app.apply(Action::PrevTab);
    });
    time("key: reverse sort", 10, || app.apply(Action::SortReverse));
    time("key: filter char", 10, || {
        app.apply(Action::EditFilter);
        app.apply(Action::FilterChar('7'));
        app.apply(Action::Back);
    });
}
