//! Fixtures for the tests and the benchmark of the names flowtop shows
//! (issue 13: the name the program asked for): a real DNS server
//! ([`Dnsmasq`]), the HTTPS record data it serves, self-signed certificates
//! for `openssl s_server`, programs copied under unique names, long-running
//! helpers killed on drop ([`Proc`]), and the bytes programs send: DNS
//! queries and answers ([`dns_query`], [`dns_a_response`]) and a hand-made
//! TLS ClientHello ([`client_hello`]) whose SNI can lie beyond the first
//! segment and can hold any bytes.
//!
//! Written from the RFCs (1035 for DNS messages, 8446 for the ClientHello,
//! 9460 for the HTTPS record); none of it needs flowtop, so xtask (which
//! takes this crate without the `flowtop` feature) uses it too.

use std::io::{self, BufRead as _, BufReader, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use crate::netns::{describe, try_output, Netns};

static NEXT_DIR: AtomicU32 = AtomicU32::new(0);

/// A scratch directory under the system temp directory, removed on drop.
pub struct Scratch(PathBuf);

impl Scratch {
    /// `<tmp>/<prefix>-<pid>-<n>`, created fresh.
    pub fn new(prefix: &str) -> io::Result<Scratch> {
        let n = NEXT_DIR.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("{prefix}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .map_err(|e| io::Error::new(e.kind(), format!("mkdir {}: {e}", dir.display())))?;
        Ok(Scratch(dir))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Copies the program at `src` into `dir` as `name`: a process running the
/// copy has an `exe` (and `comm`) no other process has, so its flows can be
/// told apart from everything else on the machine.
pub fn program_copy(dir: &Path, src: &str, name: &str) -> io::Result<PathBuf> {
    let to = dir.join(name);
    std::fs::copy(src, &to)
        .map_err(|e| io::Error::new(e.kind(), format!("copy {src} to {}: {e}", to.display())))?;
    Ok(to)
}

/// A self-signed certificate and its key (`cert.pem`, `key.pem` in `dir`),
/// made by `openssl req` with an EC key, for `openssl s_server`.
pub fn self_signed_cert(dir: &Path, cn: &str) -> io::Result<(PathBuf, PathBuf)> {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    try_output(
        Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "2",
                "-subj",
            ])
            .arg(format!("/CN={cn}"))
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert),
    )?;
    Ok((cert, key))
}

/// A long-running helper process, killed (and reaped) on drop, whose stdout
/// is read line by line in the background.
pub struct Proc {
    child: Child,
    lines: Receiver<String>,
    stdin: Option<ChildStdin>,
    what: String,
}

impl Proc {
    /// Starts `cmd` with stdin and stdout piped (stderr as the caller set it,
    /// inherited by default).
    pub fn spawn(mut cmd: Command) -> io::Result<Proc> {
        let what = describe(&cmd);
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot start `{what}`: {e}")))?;
        let stdout = child.stdout.take().expect("stdout piped");
        let stdin = child.stdin.take();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Ok(Proc {
            child,
            lines: rx,
            stdin,
            what,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next line of stdout, waiting at most `timeout`.
    pub fn line(&mut self, timeout: Duration) -> io::Result<String> {
        match self.lines.recv_timeout(timeout) {
            Ok(l) => Ok(l),
            Err(RecvTimeoutError::Timeout) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("`{}` printed no line within {timeout:?}", self.what),
            )),
            Err(RecvTimeoutError::Disconnected) => {
                let st = self.child.try_wait().ok().flatten();
                Err(io::Error::other(format!(
                    "`{}` closed its stdout (exit: {st:?}) before printing a line",
                    self.what
                )))
            }
        }
    }

    /// Writes `line` and a newline to the process's stdin.
    pub fn send(&mut self, line: &str) -> io::Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| io::Error::other(format!("`{}`: stdin closed", self.what)))?;
        stdin.write_all(format!("{line}\n").as_bytes())?;
        stdin.flush()
    }

    /// Closes stdin (helpers that hold a connection until stdin ends let it go).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits for the process to exit by itself, at most `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> io::Result<std::process::ExitStatus> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait()? {
                return Ok(st);
            }
            if Instant::now() >= end {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("`{}` still running after {timeout:?}", self.what),
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stdin = None;
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A dnsmasq (package `dnsmasq-base`) serving DNS in a network namespace,
/// in the foreground, configured entirely by its command line: no
/// configuration file, no `/etc/hosts`, no upstream servers unless given.
/// Killed on drop.
pub struct Dnsmasq {
    child: Child,
    _dir: Scratch,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

/// The binary (Debian puts it in /usr/sbin, which may not be on a test's PATH).
pub fn dnsmasq_bin() -> &'static str {
    if Path::new("/usr/sbin/dnsmasq").exists() {
        "/usr/sbin/dnsmasq"
    } else {
        "dnsmasq"
    }
}

impl Dnsmasq {
    /// Starts dnsmasq in `ns` on port 53 of each `listen` address (bound to
    /// exactly those), with the records and options in `args` (such as
    /// `--host-record=...`, `--server=...`), and waits for it to serve.
    pub fn start(ns: &Netns, listen: &[IpAddr], args: &[String]) -> io::Result<Dnsmasq> {
        let dir = Scratch::new("ft-dnsmasq")?;
        let mut cmd = ns.cmd(dnsmasq_bin());
        cmd.args([
            "--keep-in-foreground",
            "--no-resolv",
            "--no-hosts",
            "--conf-file=/dev/null",
            "--bind-interfaces",
            "--log-facility=-",
            "--user=root",
            "--port=53",
            "--local-ttl=300",
        ])
        .arg(format!("--pid-file={}", dir.path().join("dnsmasq.pid").display()));
        for a in listen {
            cmd.arg(format!("--listen-address={a}"));
        }
        cmd.args(args);
        let what = describe(&cmd);
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot start `{what}`: {e}")))?;
        let stderr = child.stderr.take().expect("stderr piped");
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let sink = std::sync::Arc::clone(&log);
        thread::spawn(move || {
            for l in BufReader::new(stderr).lines().map_while(Result::ok) {
                if l.contains("started, version") {
                    let _ = tx.send(());
                }
                if let Ok(mut g) = sink.lock() {
                    g.push_str(&l);
                    g.push('\n');
                }
            }
        });
        let mut d = Dnsmasq {
            child,
            _dir: dir,
            log,
        };
        // dnsmasq binds its sockets before it logs "started".
        if rx.recv_timeout(Duration::from_secs(5)).is_err() {
            let st = d.child.try_wait().ok().flatten();
            return Err(io::Error::other(format!(
                "`{what}` did not start (exit: {st:?}):\n{}",
                d.log()
            )));
        }
        Ok(d)
    }

    /// Everything dnsmasq logged so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|g| g.clone()).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The reverse-lookup name of `ip` (`in-addr.arpa` or nibbles under
/// `ip6.arpa`), as `--ptr-record` wants it.
pub fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut s = String::new();
            for b in v6.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", b & 0xf, b >> 4));
            }
            s.push_str("ip6.arpa");
            s
        }
    }
}

/// RDATA of an HTTPS (type 65) record in ServiceMode (RFC 9460 section 2.2):
/// SvcPriority `priority`, TargetName "." (the owner itself), then the
/// SvcParams in increasing key order: ipv4hint (key 4) and ipv6hint (key 6),
/// each left out when empty. As lowercase hex, what dnsmasq's
/// `--dns-rr=NAME,65,HEX` takes.
pub fn https_rdata(priority: u16, v4: &[Ipv4Addr], v6: &[Ipv6Addr]) -> Vec<u8> {
    let mut r = priority.to_be_bytes().to_vec();
    r.push(0); // the root name
    if !v4.is_empty() {
        r.extend_from_slice(&4u16.to_be_bytes());
        r.extend_from_slice(&u16::try_from(4 * v4.len()).expect("few hints").to_be_bytes());
        for a in v4 {
            r.extend_from_slice(&a.octets());
        }
    }
    if !v6.is_empty() {
        r.extend_from_slice(&6u16.to_be_bytes());
        r.extend_from_slice(&u16::try_from(16 * v6.len()).expect("few hints").to_be_bytes());
        for a in v6 {
            r.extend_from_slice(&a.octets());
        }
    }
    r
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes from hex text, whitespace ignored; None on anything else.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).ok()?, 16).ok())
        .collect()
}

/// A name in DNS wire form from dotted text whose labels are taken as raw
/// bytes (so a label may hold any byte but '.'); labels longer than 63
/// bytes are cut to 63.
pub fn wire_name(name: &[u8]) -> Vec<u8> {
    let mut w = Vec::with_capacity(name.len() + 2);
    for label in name.split(|&b| b == b'.').filter(|l| !l.is_empty()) {
        let label = &label[..label.len().min(63)];
        w.push(label.len() as u8);
        w.extend_from_slice(label);
    }
    w.push(0);
    w
}

/// A DNS query (recursion desired) for `name` of type `qtype`, class IN.
pub fn dns_query(id: u16, name: &[u8], qtype: u16) -> Vec<u8> {
    let mut m = id.to_be_bytes().to_vec();
    m.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    m.extend_from_slice(&wire_name(name));
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes());
    m
}

/// A well-formed response to an A query for `name`: one A record `addr`
/// with `ttl`, its owner a compression pointer to the question.
pub fn dns_a_response(id: u16, name: &[u8], addr: Ipv4Addr, ttl: u32) -> Vec<u8> {
    let mut m = id.to_be_bytes().to_vec();
    m.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]);
    m.extend_from_slice(&wire_name(name));
    m.extend_from_slice(&[0, 1, 0, 1]);
    m.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1]);
    m.extend_from_slice(&ttl.to_be_bytes());
    m.extend_from_slice(&[0, 4]);
    m.extend_from_slice(&addr.octets());
    m
}

/// A response whose question name is a compression pointer to itself (a
/// loop a parser must refuse), with one answer that points at it too.
pub fn dns_loop_response(id: u16) -> Vec<u8> {
    let mut m = id.to_be_bytes().to_vec();
    m.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]);
    m.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1]);
    m.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 99]);
    m
}

/// A TLS 1.3 ClientHello (RFC 8446 section 4.1.2) in one handshake record,
/// with `server_name` `sni` (raw bytes: any byte is allowed here, which is
/// the point of hostile-name tests) as its last extension, preceded by a
/// key_share of `key_share_len` bytes (an X25519MLKEM768 share is 1216:
/// what pushes today's hellos past one segment). Returns the record and the
/// offset at which the server_name extension begins.
pub fn client_hello(sni: &[u8], key_share_len: usize) -> (Vec<u8>, usize) {
    build_hello(sni, key_share_len, false)
}

/// [`client_hello`] with an outer Encrypted ClientHello extension
/// (`encrypted_client_hello`, 0xfe0d, type outer: RFC 9849 section 5) before
/// the server_name: `sni` is then the client-facing server's public name.
/// The encrypted payload is filler: flowtop reads names, it decrypts nothing.
pub fn client_hello_ech(public_name: &[u8], key_share_len: usize) -> (Vec<u8>, usize) {
    build_hello(public_name, key_share_len, true)
}

fn build_hello(sni: &[u8], key_share_len: usize, ech: bool) -> (Vec<u8>, usize) {
    fn u16b(n: usize) -> [u8; 2] {
        u16::try_from(n).expect("fits 16 bits").to_be_bytes()
    }
    let mut ext = Vec::new();
    // supported_versions: TLS 1.3
    ext.extend_from_slice(&[0, 43, 0, 3, 2, 3, 4]);
    // supported_groups: X25519MLKEM768, x25519
    ext.extend_from_slice(&[0, 10, 0, 6, 0, 4, 0x11, 0xec, 0, 0x1d]);
    // signature_algorithms: ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256
    ext.extend_from_slice(&[0, 13, 0, 6, 0, 4, 4, 3, 8, 4]);
    // key_share: one X25519MLKEM768 share of key_share_len bytes (not a
    // real key: flowtop reads names, not keys).
    let entry_len = 4 + key_share_len;
    ext.extend_from_slice(&[0, 51]);
    ext.extend_from_slice(&u16b(2 + entry_len));
    ext.extend_from_slice(&u16b(entry_len));
    ext.extend_from_slice(&[0x11, 0xec]);
    ext.extend_from_slice(&u16b(key_share_len));
    ext.extend((0..key_share_len).map(|i| (i * 7 + 3) as u8));
    if ech {
        // type outer, HKDF-SHA256, AES-128-GCM, config_id, enc (32), payload (200)
        let mut body = vec![0, 0, 1, 0, 1, 0x2a, 0, 32];
        body.extend((0..32u8).map(|i| i ^ 0x5a));
        body.extend_from_slice(&[0, 200]);
        body.extend((0..200u8).map(|i| i.wrapping_mul(3)));
        ext.extend_from_slice(&[0xfe, 0x0d]);
        ext.extend_from_slice(&u16b(body.len()));
        ext.extend_from_slice(&body);
    }
    let sni_in_ext = ext.len();
    // server_name: one host_name entry
    ext.extend_from_slice(&[0, 0]);
    ext.extend_from_slice(&u16b(sni.len() + 5));
    ext.extend_from_slice(&u16b(sni.len() + 3));
    ext.push(0);
    ext.extend_from_slice(&u16b(sni.len()));
    ext.extend_from_slice(sni);

    let mut body = vec![3, 3];
    body.extend((0..32u8).map(|i| i.wrapping_mul(13)));
    body.push(32);
    body.extend((0..32u8).map(|i| i.wrapping_mul(29)));
    body.extend_from_slice(&[0, 6, 0x13, 0x01, 0x13, 0x02, 0x13, 0x03]);
    body.extend_from_slice(&[1, 0]);
    body.extend_from_slice(&u16b(ext.len()));
    let sni_in_body = body.len() + sni_in_ext;
    body.extend_from_slice(&ext);

    let hs_len = u32::try_from(body.len()).expect("small").to_be_bytes();
    let mut rec = vec![0x16, 3, 1];
    rec.extend_from_slice(&u16b(body.len() + 4));
    rec.push(1);
    rec.extend_from_slice(&hs_len[1..]);
    let sni_at = rec.len() + sni_in_body;
    rec.extend_from_slice(&body);
    (rec, sni_at)
}

/// The first bytes of a plain HTTP/1.1 request for `/` to `host`.
pub fn http_request(host: &str) -> Vec<u8> {
    format!("GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: flowtop-test\r\nConnection: close\r\n\r\n")
        .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_https_rdata_is_priority_root_and_both_hints_in_key_order() {
        let r = https_rdata(
            1,
            &[Ipv4Addr::new(192, 0, 2, 13)],
            &["2001:db8::13".parse().expect("v6")],
        );
        assert_eq!(
            hex(&r),
            "0001\
             00\
             0004 0004 c000020d\
             0006 0010 20010db8000000000000000000000013"
                .replace(' ', "")
        );
    }

    #[test]
    fn reverse_names_of_both_families() {
        assert_eq!(
            reverse_name("192.0.2.10".parse().expect("v4")),
            "10.2.0.192.in-addr.arpa"
        );
        let v6 = reverse_name("2001:db8::10".parse().expect("v6"));
        assert!(v6.starts_with("0.1.0.0.0.0.0.0."), "{v6}");
        assert!(v6.ends_with("8.b.d.0.1.0.0.2.ip6.arpa"), "{v6}");
        assert_eq!(v6.split('.').count(), 34);
    }

    #[test]
    fn the_client_hello_lengths_add_up_and_the_sni_is_where_it_says() {
        let (h, at) = client_hello(b"sni.example", 1216);
        assert_eq!(h[0], 0x16);
        assert_eq!(usize::from(u16::from_be_bytes([h[3], h[4]])), h.len() - 5);
        assert_eq!(h[5], 1);
        let hs = usize::from(h[6]) << 16 | usize::from(h[7]) << 8 | usize::from(h[8]);
        assert_eq!(hs, h.len() - 9);
        assert_eq!(&h[at..at + 2], &[0, 0], "server_name extension type");
        assert!(h.ends_with(b"sni.example"));
        assert!(at > 1216, "the key share comes first");
    }

    #[test]
    fn dns_messages_are_well_formed() {
        let q = dns_query(7, b"a.example", 1);
        assert_eq!(&q[12..23], b"\x01a\x07example\x00");
        let r = dns_a_response(7, b"a.example", Ipv4Addr::new(192, 0, 2, 1), 60);
        assert_eq!(r.len(), 12 + 11 + 4 + 16);
        assert_eq!(&r[r.len() - 4..], &[192, 0, 2, 1]);
        assert_eq!(unhex("0a ff\n10"), Some(vec![10, 255, 16]));
        assert_eq!(unhex("0"), None);
    }
}
