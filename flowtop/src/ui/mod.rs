//! The interactive screen: `flowtop` without `--once` or `--json`.
//!
//! The engine publishes a [`Snapshot`] of the table once per interval
//! through a `watch` channel; the screen runs on a thread of its own and
//! never waits on the engine, DNS, GeoIP or /proc. Rows for each snapshot
//! are built on a deriver thread; terminal input is read on a third.
//!
//! Modules: [`app`] (state and actions), [`derive`](mod@derive) (rows from a
//! snapshot), [`keys`] (key bindings), [`sort`], [`filter`], [`rows`] (cell
//! text and aggregates), [`render`] (one frame), [`term`] (the terminal
//! guard), [`procinfo`] (command lines read in the background).

pub mod app;
pub mod charts;
pub mod derive;
pub mod ended;
pub mod filter;
pub mod history;
pub mod keys;
pub mod procinfo;
pub mod render;
pub mod rows;
pub mod sort;
pub mod spark;
pub mod term;

#[cfg(test)]
mod fixture;
#[cfg(test)]
mod identity_tests;
#[cfg(test)]
mod pictures_tests;
#[cfg(test)]
mod tests;

use std::io::{self, Write as _};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime};

use crossterm::event::{self, Event};
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;
use tokio::sync::watch;

use crate::engine::Notes;
use crate::enrich::book::AddressBook;
use crate::enrich::services::Services;
use crate::flow::table::Snapshot;

pub use app::{App, HeaderInfo, ViewOptions};

/// Everything the screen reads.
pub struct ScreenInput {
    /// The table, as the engine last published it. The engine dropping its
    /// sender ends the screen.
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
    /// Names and geography per address (filled by the enrichment).
    pub book: Arc<AddressBook>,
    pub services: Arc<Services>,
    pub header: HeaderInfo,
    pub view: ViewOptions,
    /// Warnings of the engine, shown in the footer.
    pub notes: Notes,
    /// Dropped (or set) when the user quits, which stops the engine.
    pub quit: watch::Sender<bool>,
    /// The engine's book of DNS answers, once it made one.
    pub asked_names: crate::names::tracker::BookSlot,
    /// `FLOWTOP_FRAME_LOG`: a file that gets one line per frame with the
    /// microseconds spent on rows on the screen's thread, drawing, and on
    /// rows on the deriver thread, then the Processes rate histories'
    /// groups and bytes, then the flow histories' flows and bytes (for
    /// `xtask bench ui`).
    pub frame_log: Option<std::fs::File>,
    /// The journal the History tab reads (`--journal`).
    pub journal: std::path::PathBuf,
}

/// How long the loop waits for input before looking for a new snapshot.
const POLL: Duration = Duration::from_millis(50);

/// What wakes the screen's loop besides its timeout.
enum Wake {
    Input(Event),
    /// Rows the deriver built, and the microseconds it took.
    Derived(Box<derive::Derived>, u128),
    /// A read of the journal, for the History tab.
    History(history::Loaded),
}

/// Runs the screen until the user quits or the engine ends.
///
/// Rows for a new snapshot are built on a deriver thread, so that keys are
/// answered at once while it works; the screen takes the rows when they
/// come, unless a key changed what they depend on meanwhile (then they are
/// built again). Keys that change the rows (sort, filter, tab...) rebuild
/// them on the screen's thread: the user waits for what was asked.
pub fn run(mut input: ScreenInput) -> io::Result<()> {
    let procs = procinfo::ProcInfos::spawn("/proc".into())?;
    let mut app = App::new(
        input.header.clone(),
        input.view.clone(),
        Arc::clone(&input.book),
        Arc::clone(&input.services),
        procs,
    );
    app.asked_names = Arc::clone(&input.asked_names);
    app.glyphs = spark::Glyphs::from_env();
    // `xtask bench ui --processes`: its peer run keeps no rate history.
    app.trend = std::env::var_os("FLOWTOP_BENCH_NO_TREND").is_none();
    // Its peer run for the flow histories (the detail chart's past).
    app.keep_flow_history = std::env::var_os("FLOWTOP_BENCH_NO_FLOW_HISTORY").is_none();
    let _guard = term::TerminalGuard::enter()?;
    let (wake, woken) = mpsc::channel::<Wake>();
    spawn_input(wake.clone())?;
    app.history.path = Some(input.journal.clone());
    let to_screen = wake.clone();
    app.history_loader = Some(history::Loader::spawn(input.journal.clone(), move |l| {
        to_screen.send(Wake::History(l)).is_ok()
    })?);
    let jobs = spawn_deriver(Arc::clone(&input.book), Arc::clone(&input.services), wake)?;
    let mut terminal = Terminal::new(CrosstermBackend::new(io::stdout()))?;
    let size = terminal.size()?;
    app.resize(size.width, size.height);
    let mut dirty = true;
    // Microseconds spent on this frame's rows, on this thread and the deriver's.
    let mut built_here = 0u128;
    let mut built_there = 0u128;
    loop {
        match input.snapshots.has_changed() {
            Ok(true) => {
                let snap = Arc::clone(&input.snapshots.borrow_and_update());
                match app.snapshot_job(snap) {
                    Some(job) => {
                        let _ = jobs.send(ToDeriver::Job(job));
                    }
                    // While paused the header's live count moves; unpaused,
                    // the rows stood and the header's counters moved.
                    None => dirty = true,
                }
                let garbage = app.take_garbage();
                if !garbage.is_empty() {
                    let _ = jobs.send(ToDeriver::Free(garbage));
                }
            }
            Ok(false) => {}
            Err(_) => break, // the engine ended (signal, error)
        }
        app.note = input
            .notes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .last()
            .cloned();
        // The detail view waits for /proc in the background: look again.
        if app.detail.is_some() {
            dirty = true;
        }
        if dirty {
            let t0 = Instant::now();
            terminal.draw(|f| render::draw(f, &app, SystemTime::now()))?;
            if let Some(log) = &mut input.frame_log {
                // Then the Processes histories: groups and bytes held.
                let _ = writeln!(
                    log,
                    "{built_here} {} {built_there} {} {} {} {}",
                    t0.elapsed().as_micros(),
                    app.rate_history.len(),
                    app.rate_history.heap_bytes(),
                    app.flow_history.len(),
                    app.flow_history.heap_bytes()
                );
            }
            built_here = 0;
            built_there = 0;
            dirty = false;
        }
        if terminal_hung_up() {
            break;
        }
        match woken.recv_timeout(POLL) {
            Ok(first) => {
                // Take everything pending before drawing again: a burst of
                // keys (or a held key) costs one frame, not one each.
                let mut next = Some(first);
                while let Some(w) = next {
                    let t0 = Instant::now();
                    match w {
                        Wake::Input(ev) => handle(&mut app, ev),
                        Wake::History(l) => app.history_loaded(l),
                        Wake::Derived(d, us) => {
                            built_there += us;
                            if let Some(job) = app.take_derived(*d) {
                                let _ = jobs.send(ToDeriver::Job(job));
                            }
                            // The snapshot these rows replaced may hold the
                            // last references to chunks the table copied
                            // since: freed off this thread.
                            let garbage = app.take_garbage();
                            if !garbage.is_empty() {
                                let _ = jobs.send(ToDeriver::Free(garbage));
                            }
                        }
                    }
                    built_here += t0.elapsed().as_micros();
                    next = if app.quit { None } else { woken.try_recv().ok() };
                }
                dirty = true;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if app.quit {
            break;
        }
    }
    let _ = input.quit.send(true);
    Ok(())
}

/// Reads terminal events on a thread of its own. crossterm's reader loops
/// without end once the terminal has hung up (a read of 0 bytes is taken
/// for "no data yet"): kept off the screen's loop, which notices the hangup
/// itself ([`terminal_hung_up`]) and ends; the process then exits.
fn spawn_input(wake: mpsc::Sender<Wake>) -> io::Result<()> {
    std::thread::Builder::new().name("input".into()).spawn(move || {
        while let Ok(ev) = event::read() {
            if wake.send(Wake::Input(ev)).is_err() {
                return;
            }
        }
    })?;
    Ok(())
}

/// What the screen asks of the deriver thread.
enum ToDeriver {
    Job(derive::Job),
    /// Snapshots to free: unmapping the chunks only they still hold takes
    /// milliseconds the screen need not spend.
    Free(Vec<Arc<Snapshot>>),
}

/// Builds rows for snapshots on a thread of its own; only the newest job
/// waiting is worth doing.
fn spawn_deriver(
    book: Arc<AddressBook>,
    services: Arc<Services>,
    wake: mpsc::Sender<Wake>,
) -> io::Result<mpsc::Sender<ToDeriver>> {
    let (tx, rx) = mpsc::channel::<ToDeriver>();
    std::thread::Builder::new().name("rows".into()).spawn(move || {
        let mut buffer = Vec::new();
        while let Ok(msg) = rx.recv() {
            let mut job = match msg {
                ToDeriver::Job(job) => job,
                ToDeriver::Free(garbage) => {
                    drop(garbage);
                    continue;
                }
            };
            while let Ok(newer) = rx.try_recv() {
                match newer {
                    ToDeriver::Job(mut newer) => {
                        newer.garbage.append(&mut job.garbage);
                        job = newer;
                    }
                    ToDeriver::Free(garbage) => drop(garbage),
                }
            }
            let t0 = Instant::now();
            let ctx = rows::RowCtx {
                book: &book,
                services: &services,
            };
            let d = derive::run_job(job, ctx, &mut buffer);
            let us = t0.elapsed().as_micros();
            if wake.send(Wake::Derived(Box::new(d), us)).is_err() {
                return;
            }
        }
    })?;
    Ok(tx)
}

/// Whether the terminal went away (its window closed, the ssh connection
/// dropped): poll reports a hangup on it.
fn terminal_hung_up() -> bool {
    let mut pfd = libc::pollfd {
        fd: libc::STDOUT_FILENO,
        events: 0,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout.
    let rc = unsafe { libc::poll(&mut pfd, 1, 0) };
    rc > 0 && pfd.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0
}

fn handle(app: &mut App, ev: Event) {
    let action = match ev {
        Event::Key(k) => keys::action(k, app.mode()),
        Event::Mouse(m) => keys::mouse_action(m, app.mode()),
        Event::Resize(w, h) => {
            app.resize(w, h);
            None
        }
        _ => None,
    };
    if let Some(a) = action {
        app.apply(a);
    }
}
