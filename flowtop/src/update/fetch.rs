//! HTTP(S) downloads for `-u`: bounded in size and time, with progress on
//! stderr, and every failure told apart (status, truncation, size, I/O).

use std::io::{IsTerminal, Read, Write};
use std::time::{Duration, Instant};

/// Largest download accepted (compressed or not). The biggest free
/// database, DB-IP City Lite, is ~130 MB uncompressed.
pub const MAX_DOWNLOAD: u64 = 512 << 20;

/// Why a download failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FetchError {
    #[error("HTTP 404 (not found)")]
    NotFound,
    #[error("HTTP {0}")]
    Status(u16),
    #[error("truncated: {got} of {want} bytes received")]
    Truncated { got: u64, want: u64 },
    #[error("larger than the {limit}-byte limit")]
    TooLarge { limit: u64 },
    #[error("{0}")]
    Transport(String),
}

/// Where progress goes: a line updated in place on a terminal, one line
/// per file otherwise (logs, cron).
pub struct Progress {
    tty: bool,
    quiet: bool,
}

impl Progress {
    pub fn stderr() -> Progress {
        Progress {
            tty: std::io::stderr().is_terminal(),
            quiet: false,
        }
    }

    /// No output (unit tests).
    pub fn quiet() -> Progress {
        Progress {
            tty: false,
            quiet: true,
        }
    }

    fn update(&self, url: &str, got: u64, total: Option<u64>) {
        if self.tty && !self.quiet {
            let total = total.map_or_else(|| "?".to_owned(), size);
            eprint!("\r\x1b[K{url}: {} / {total}", size(got));
            let _ = std::io::stderr().flush();
        }
    }

    fn done(&self, url: &str, result: &str) {
        if self.quiet {
            return;
        }
        if self.tty {
            eprint!("\r\x1b[K");
        }
        eprintln!("flowtop: {url}: {result}");
    }

    /// A line about a download that did not work out (the next is tried).
    pub fn note(&self, msg: &str) {
        if !self.quiet {
            eprintln!("flowtop: {msg}");
        }
    }
}

fn size(n: u64) -> String {
    if n < 1 << 20 {
        return format!("{n} bytes");
    }
    format!("{:.1} MiB", n as f64 / f64::from(1 << 20))
}

/// The HTTP client: certificate checks with the bundled web PKI roots,
/// statuses returned rather than turned into errors, timeouts on connect
/// and on every read (a stalled transfer fails; a slow one may finish).
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_resolve(Some(Duration::from_secs(15)))
        .timeout_connect(Some(Duration::from_secs(15)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .timeout_per_read(Some(Duration::from_secs(60)))
        .timeout_global(Some(Duration::from_secs(3600)))
        .user_agent(format!("flowtop/{}", crate::VERSION))
        .build()
        .new_agent()
}

/// GETs `url` into memory, at most `limit` bytes.
pub fn get(agent: &ureq::Agent, url: &str, limit: u64, progress: &Progress) -> Result<Vec<u8>, FetchError> {
    let resp = agent
        .get(url)
        .call()
        .map_err(|e| FetchError::Transport(e.to_string()))?;
    match resp.status().as_u16() {
        200 => {}
        404 => return Err(FetchError::NotFound),
        s => return Err(FetchError::Status(s)),
    }
    let total = resp
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if total.is_some_and(|t| t > limit) {
        return Err(FetchError::TooLarge { limit });
    }
    let mut body = resp.into_body().into_reader();
    // What the server announces is not trusted for more than 64 MiB up front.
    let mut buf = Vec::with_capacity(total.map_or(1 << 20, |t| t.min(64 << 20) as usize));
    let mut chunk = vec![0u8; 1 << 16];
    let mut last = Instant::now();
    let outcome = loop {
        match body.read(&mut chunk) {
            Ok(0) => break Ok(()),
            Ok(n) => {
                if buf.len() as u64 + n as u64 > limit {
                    break Err(FetchError::TooLarge { limit });
                }
                buf.extend_from_slice(&chunk[..n]);
                if last.elapsed() >= Duration::from_millis(100) {
                    progress.update(url, buf.len() as u64, total);
                    last = Instant::now();
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // The client reports a body shorter than its Content-Length
            // as an error: name it for what it is.
            Err(e) => match total {
                Some(want) if (buf.len() as u64) < want => {
                    break Err(FetchError::Truncated {
                        got: buf.len() as u64,
                        want,
                    })
                }
                _ => break Err(FetchError::Transport(e.to_string())),
            },
        }
    };
    let got = buf.len() as u64;
    let outcome = outcome.and(match total {
        Some(want) if got != want => Err(FetchError::Truncated { got, want }),
        _ => Ok(()),
    });
    match &outcome {
        Ok(()) => progress.done(url, &format!("{} received", size(got))),
        Err(e) => progress.done(url, &format!("failed after {}: {e}", size(got))),
    }
    outcome.map(|()| buf)
}
