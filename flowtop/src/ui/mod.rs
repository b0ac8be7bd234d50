//! The interactive screen: `flowtop` without `--once` or `--json`.
//!
//! The engine publishes a [`Snapshot`] of the table once per interval
//! through a `watch` channel; the screen runs on a thread of its own and
//! never waits on the engine, DNS, GeoIP or /proc. Modules: [`app`] (state
//! and actions), [`keys`] (key bindings), [`sort`], [`filter`], [`rows`]
//! (cell text and aggregates), [`render`] (one frame), [`term`] (the
//! terminal guard), [`procinfo`] (command lines read in the background).

pub mod app;
pub mod filter;
pub mod keys;
pub mod procinfo;
pub mod render;
pub mod rows;
pub mod sort;
pub mod term;

#[cfg(test)]
mod fixture;
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
    /// `FLOWTOP_FRAME_LOG`: a file that gets one line per frame with the
    /// microseconds spent deriving rows and drawing (for `xtask bench ui`).
    pub frame_log: Option<std::fs::File>,
}

/// How long the loop waits for input before looking for a new snapshot.
const POLL: Duration = Duration::from_millis(50);

/// Runs the screen until the user quits or the engine ends.
pub fn run(mut input: ScreenInput) -> io::Result<()> {
    let procs = procinfo::ProcInfos::spawn("/proc".into())?;
    let mut app = App::new(
        input.header.clone(),
        input.view.clone(),
        Arc::clone(&input.book),
        Arc::clone(&input.services),
        procs,
    );
    let _guard = term::TerminalGuard::enter()?;
    let events = spawn_input()?;
    let mut terminal = Terminal::new(CrosstermBackend::new(io::stdout()))?;
    let size = terminal.size()?;
    app.resize(size.width, size.height);
    let mut dirty = true;
    let mut derive_us = 0u128;
    loop {
        match input.snapshots.has_changed() {
            Ok(true) => {
                let snap = Arc::clone(&input.snapshots.borrow_and_update());
                let t0 = Instant::now();
                app.on_snapshot(snap);
                derive_us += t0.elapsed().as_micros();
                dirty = true;
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
                let _ = writeln!(log, "{derive_us} {}", t0.elapsed().as_micros());
            }
            derive_us = 0;
            dirty = false;
        }
        if terminal_hung_up() {
            break;
        }
        match events.recv_timeout(POLL) {
            Ok(first) => {
                // Take every pending event before drawing again: a burst of
                // keys (or a held key) costs one frame, not one each.
                let t0 = Instant::now();
                handle(&mut app, first);
                while let (false, Ok(ev)) = (app.quit, events.try_recv()) {
                    handle(&mut app, ev);
                }
                derive_us += t0.elapsed().as_micros();
                dirty = true;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break, // input failed
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
fn spawn_input() -> io::Result<mpsc::Receiver<Event>> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new().name("input".into()).spawn(move || {
        while let Ok(ev) = event::read() {
            if tx.send(ev).is_err() {
                return;
            }
        }
    })?;
    Ok(rx)
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
