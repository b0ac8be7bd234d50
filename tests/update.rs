//! `flowtop -u` against a local HTTP server on 127.0.0.1 (no root, no
//! network): good mirrors, 404s, truncated, corrupt and wrong-type
//! downloads, `.gz` and `.tar.gz`, a symlink at the target. After every
//! run the installed file is the new good one or the old one, byte for
//! byte, and no temporary file is left.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use flowtop::enrich::geoip::{self, DbKind};
use flowtop_testkit::mmdb::{city_record, country_record, Writer};

const FLOWTOP: &str = env!("CARGO_BIN_EXE_flowtop");

/// What the server answers for a path.
#[derive(Clone)]
enum Resp {
    Ok(Vec<u8>),
    /// Sends `body` with a Content-Length `extra` bytes larger, then closes.
    Truncated(Vec<u8>, usize),
    Status(u16),
}

/// A tiny HTTP/1.1 server: one thread, one request per connection.
struct Server {
    port: u16,
    routes: Arc<Mutex<HashMap<String, Resp>>>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().expect("local addr").port();
        let routes: Arc<Mutex<HashMap<String, Resp>>> = Arc::default();
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let (r, l) = (routes.clone(), log.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (r, l) = (r.clone(), l.clone());
                std::thread::spawn(move || serve(conn, &r, &l));
            }
        });
        Server { port, routes, log }
    }

    fn route(&self, path: &str, resp: Resp) {
        self.routes.lock().expect("routes").insert(path.to_owned(), resp);
    }

    fn base(&self, prefix: &str) -> String {
        format!("http://127.0.0.1:{}/{prefix}", self.port)
    }

    fn requests(&self) -> Vec<String> {
        self.log.lock().expect("log").clone()
    }
}

fn serve(conn: TcpStream, routes: &Mutex<HashMap<String, Resp>>, log: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(match conn.try_clone() {
        Ok(c) => c,
        Err(_) => return,
    });
    let mut request = String::new();
    if reader.read_line(&mut request).is_err() {
        return;
    }
    loop {
        let mut h = String::new();
        match reader.read_line(&mut h) {
            Ok(0) | Err(_) => break,
            Ok(_) if h == "\r\n" || h == "\n" => break,
            Ok(_) => {}
        }
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/").to_owned();
    log.lock().expect("log").push(path.clone());
    let resp = routes
        .lock()
        .expect("routes")
        .get(&path)
        .cloned()
        .unwrap_or(Resp::Status(404));
    let mut conn = conn;
    let (status, body, len) = match resp {
        Resp::Ok(b) => (200, b.clone(), b.len()),
        Resp::Truncated(b, extra) => (200, b.clone(), b.len() + extra),
        Resp::Status(s) => (s, b"nope\n".to_vec(), 5),
    };
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {len}\r\nContent-Type: application/octet-stream\r\n\
         Connection: close\r\n\r\n"
    );
    let _ = conn.write_all(head.as_bytes());
    let _ = conn.write_all(&body);
    let _ = conn.flush();
    let _ = conn.shutdown(std::net::Shutdown::Both);
}

/// A test's directories: `conf` (geoip.conf) and `geo` (the install target).
struct Dirs {
    root: PathBuf,
    conf: PathBuf,
    geo: PathBuf,
}

impl Dirs {
    fn new(name: &str, mirrors: &[String]) -> Dirs {
        let root = std::env::temp_dir().join(format!("flowtop-update-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let (conf, geo) = (root.join("conf"), root.join("geo"));
        std::fs::create_dir_all(&conf).expect("mkdir");
        let mut text = String::from("# test mirrors\n");
        for m in mirrors {
            text.push_str(m);
            text.push('\n');
        }
        std::fs::write(conf.join("geoip.conf"), text).expect("write geoip.conf");
        Dirs { root, conf, geo }
    }

    fn run(&self) -> Output {
        let out = Command::new(FLOWTOP)
            .args(["-u", "--conf-dir"])
            .arg(&self.conf)
            .arg("--geoip-dir")
            .arg(&self.geo)
            // The server is local: no proxy from the environment.
            .env_remove("http_proxy")
            .env_remove("HTTP_PROXY")
            .env_remove("https_proxy")
            .env_remove("HTTPS_PROXY")
            .env_remove("all_proxy")
            .env_remove("ALL_PROXY")
            .output()
            .expect("flowtop runs");
        eprintln!(
            "flowtop -u: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn file(&self, name: &str) -> Option<Vec<u8>> {
        std::fs::read(self.geo.join(name)).ok()
    }

    /// Pre-installs files, as from an earlier good update.
    fn preinstall(&self, name: &str, bytes: &[u8]) {
        std::fs::create_dir_all(&self.geo).expect("mkdir");
        std::fs::write(self.geo.join(name), bytes).expect("write");
    }

    fn no_temp_files(&self) {
        let left: Vec<String> = std::fs::read_dir(&self.geo)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(left.is_empty(), "temporary files left: {left:?}");
    }
}

impl Drop for Dirs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn city(name: &str) -> Vec<u8> {
    let mut w = Writer::new("GeoLite2-City", 6);
    w.insert_cidr("81.2.69.0/24", city_record("GB", "United Kingdom", name))
        .expect("insert");
    w.insert_cidr("2001:480::/32", city_record("US", "United States", "San Diego"))
        .expect("insert");
    w.to_bytes()
}

fn country(cc: &str) -> Vec<u8> {
    let mut w = Writer::new("GeoLite2-Country", 6);
    w.insert_cidr("81.0.0.0/8", country_record(cc, cc))
        .expect("insert");
    w.to_bytes()
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).expect("gzip");
    e.finish().expect("gzip")
}

fn tar_gz(dir: &str, name: &str, bytes: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (n, data) in [("COPYRIGHT.txt", &b"(c)"[..]), (name, bytes)] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, format!("{dir}/{n}"), data).expect("tar");
    }
    gz(&b.into_inner().expect("tar"))
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).expect("stat").permissions().mode() & 0o7777
}

#[test]
fn good_mirror_installs_both_and_flowtop_reads_them() {
    let s = Server::start();
    s.route("/m/GeoLite2-City.mmdb", Resp::Ok(city("London")));
    s.route("/m/GeoLite2-Country.mmdb", Resp::Ok(country("GB")));
    let d = Dirs::new("good", &[s.base("m/")]);
    let o = d.run();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(d.file("GeoLite2-City.mmdb"), Some(city("London")));
    assert_eq!(d.file("GeoLite2-Country.mmdb"), Some(country("GB")));
    assert_eq!(mode(&d.geo.join("GeoLite2-City.mmdb")), 0o644);
    assert_eq!(mode(&d.geo), 0o755);
    assert!(stderr(&o).contains("installed"), "{}", stderr(&o));
    d.no_temp_files();
    // What -u installs is what flowtop finds.
    let (g, notices) = geoip::open(&geoip::search_path(Some(&d.geo))[..1]);
    assert!(notices.is_empty(), "{notices:?}");
    let l = g.expect("opened").lookup("81.2.69.7".parse().expect("ip"));
    assert_eq!(l.city.as_deref(), Some("London"));
}

#[test]
fn not_found_on_the_first_mirror_then_the_second() {
    let s = Server::start();
    s.route("/b/GeoLite2-City.mmdb", Resp::Ok(city("Leeds")));
    s.route("/b/GeoLite2-Country.mmdb", Resp::Ok(country("GB")));
    let d = Dirs::new("second", &[s.base("a/"), s.base("b/")]);
    let o = d.run();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(d.file("GeoLite2-City.mmdb"), Some(city("Leeds")));
    let reqs = s.requests();
    assert!(reqs.contains(&"/a/GeoLite2-City.mmdb".to_owned()), "{reqs:?}");
    assert!(reqs.contains(&"/a/dbip-city-lite.mmdb.gz".to_owned()), "{reqs:?}");
}

#[test]
fn truncated_download_keeps_the_old_file() {
    let s = Server::start();
    let new = city("New");
    s.route(
        "/m/GeoLite2-City.mmdb",
        Resp::Truncated(new[..new.len() / 2].to_vec(), new.len() / 2),
    );
    s.route("/m/GeoLite2-Country.mmdb", Resp::Ok(country("DE")));
    let d = Dirs::new("truncated", &[s.base("m/")]);
    d.preinstall("GeoLite2-City.mmdb", &city("Old"));
    d.preinstall("GeoLite2-Country.mmdb", &country("GB"));
    let o = d.run();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains(&format!("{}GeoLite2-City.mmdb: truncated", s.base("m/"))),
        "{e}"
    );
    assert!(e.contains("City database was not updated"), "{e}");
    assert_eq!(
        d.file("GeoLite2-City.mmdb"),
        Some(city("Old")),
        "old file kept byte for byte"
    );
    assert_eq!(
        d.file("GeoLite2-Country.mmdb"),
        Some(country("DE")),
        "the other one updated"
    );
    d.no_temp_files();
}

#[test]
fn corrupt_download_keeps_the_old_file() {
    let s = Server::start();
    let mut bad = city("New");
    let n = bad.len();
    bad[n - 60..].fill(0xff); // the metadata
    s.route("/m/GeoLite2-City.mmdb", Resp::Ok(bad));
    s.route(
        "/m/GeoLite2-Country.mmdb",
        Resp::Ok(b"<html>maintenance</html>".to_vec()),
    );
    let d = Dirs::new("corrupt", &[s.base("m/")]);
    d.preinstall("GeoLite2-City.mmdb", &city("Old"));
    d.preinstall("GeoLite2-Country.mmdb", &country("GB"));
    let o = d.run();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("GeoLite2-City.mmdb: not a MaxMind DB file"), "{e}");
    assert!(e.contains("GeoLite2-Country.mmdb: not a MaxMind DB file"), "{e}");
    assert_eq!(d.file("GeoLite2-City.mmdb"), Some(city("Old")));
    assert_eq!(d.file("GeoLite2-Country.mmdb"), Some(country("GB")));
    d.no_temp_files();
}

#[test]
fn wrong_type_and_http_errors_keep_the_old_file() {
    let s = Server::start();
    s.route("/m/GeoLite2-City.mmdb", Resp::Ok(country("FR")));
    s.route("/m/GeoLite2-Country.mmdb", Resp::Status(500));
    let d = Dirs::new("wrongtype", &[s.base("m/")]);
    d.preinstall("GeoLite2-City.mmdb", &city("Old"));
    let o = d.run();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("GeoLite2-City.mmdb: database_type \"GeoLite2-Country\" is not a City"),
        "{e}"
    );
    assert!(e.contains("GeoLite2-Country.mmdb: HTTP 500"), "{e}");
    assert!(e.contains("HTTP 404 for GeoLite2-City.mmdb.gz"), "{e}");
    assert_eq!(d.file("GeoLite2-City.mmdb"), Some(city("Old")));
    assert_eq!(d.file("GeoLite2-Country.mmdb"), None);
    d.no_temp_files();
}

#[test]
fn gz_and_tar_gz_downloads() {
    let s = Server::start();
    s.route("/m/GeoLite2-City.mmdb.gz", Resp::Ok(gz(&city("Gz"))));
    s.route(
        "/m/GeoLite2-Country.tar.gz",
        Resp::Ok(tar_gz(
            "GeoLite2-Country_20261124",
            "GeoLite2-Country.mmdb",
            &country("NL"),
        )),
    );
    let d = Dirs::new("gz", &[s.base("m/")]);
    d.preinstall("GeoLite2-City.mmdb", &city("Old"));
    let o = d.run();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(d.file("GeoLite2-City.mmdb"), Some(city("Gz")));
    assert_eq!(d.file("GeoLite2-Country.mmdb"), Some(country("NL")));
    d.no_temp_files();
}

#[test]
fn dbip_dated_names_and_a_corrupt_gz() {
    let s = Server::start();
    let dated = |kind| {
        flowtop::update::remotes(kind, SystemTime::now())
            .into_iter()
            .find(|r| r.name.starts_with("dbip-") && r.name.contains(char::is_numeric))
            .expect("a dated DB-IP name")
            .name
    };
    let mut w = Writer::new("DBIP-City-Lite", 6);
    w.insert_cidr("81.0.0.0/8", city_record("IE", "Ireland", "Dublin"))
        .expect("insert");
    let dbip_city = w.to_bytes();
    let mut w = Writer::new("DBIP-Country-Lite", 6);
    w.insert_cidr("81.0.0.0/8", country_record("IE", "Ireland"))
        .expect("insert");
    let dbip_country = w.to_bytes();
    s.route(&format!("/m/{}", dated(DbKind::City)), Resp::Ok(gz(&dbip_city)));
    // A gzip cut short: caught while unpacking, before anything is replaced.
    let cut = gz(&dbip_country);
    s.route(
        "/m/dbip-country-lite.mmdb.gz",
        Resp::Ok(cut[..cut.len() - 30].to_vec()),
    );
    s.route(
        &format!("/m/{}", dated(DbKind::Country)),
        Resp::Ok(gz(&dbip_country)),
    );
    let d = Dirs::new("dbip", &[s.base("m/")]);
    let o = d.run();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(d.file("dbip-city-lite.mmdb"), Some(dbip_city));
    assert_eq!(d.file("dbip-country-lite.mmdb"), Some(dbip_country));
    d.no_temp_files();
}

#[test]
fn a_symlink_at_the_target_is_refused() {
    let s = Server::start();
    s.route("/m/GeoLite2-City.mmdb", Resp::Ok(city("New")));
    s.route("/m/GeoLite2-Country.mmdb", Resp::Ok(country("GB")));
    let d = Dirs::new("symlink", &[s.base("m/")]);
    std::fs::create_dir_all(&d.geo).expect("mkdir");
    let victim = d.root.join("victim");
    std::fs::write(&victim, b"precious").expect("write");
    std::os::unix::fs::symlink(&victim, d.geo.join("GeoLite2-City.mmdb")).expect("ln -s");
    let o = d.run();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("symbolic link"), "{}", stderr(&o));
    assert_eq!(std::fs::read(&victim).expect("read"), b"precious");
    let link = std::fs::symlink_metadata(d.geo.join("GeoLite2-City.mmdb")).expect("stat");
    assert!(link.file_type().is_symlink());
    assert_eq!(d.file("GeoLite2-Country.mmdb"), Some(country("GB")));
    d.no_temp_files();
}

#[test]
fn no_mirror_is_a_usage_error_and_bad_lines_are_named() {
    let d = Dirs::new(
        "nomirror",
        &["ftp://old.example.org/".to_owned(), "# only comments".to_owned()],
    );
    let o = d.run();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = stderr(&o);
    let conf = d.conf.join("geoip.conf");
    assert!(
        e.contains(&format!("{}:2: unsupported scheme 'ftp'", conf.display())),
        "{e}"
    );
    assert!(e.contains("lists no mirror"), "{e}");
    assert!(!d.geo.exists(), "nothing created");
}

#[test]
fn unreachable_mirror_fails_with_the_reason() {
    // A port nothing listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let s = Server::start();
    s.route("/m/GeoLite2-Country.mmdb", Resp::Ok(country("GB")));
    let d = Dirs::new(
        "unreachable",
        &[format!("http://127.0.0.1:{port}/"), s.base("m/")],
    );
    let o = d.run();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains(&format!("http://127.0.0.1:{port}/GeoLite2-City.mmdb: ")),
        "{e}"
    );
    // One try per unreachable mirror, not one per file name.
    assert!(
        !e.contains(&format!("http://127.0.0.1:{port}/GeoLite2-City.mmdb.gz")),
        "{e}"
    );
    assert!(
        !e.contains(&format!("http://127.0.0.1:{port}/GeoLite2-Country")),
        "{e}"
    );
    assert_eq!(
        d.file("GeoLite2-Country.mmdb"),
        Some(country("GB")),
        "the next mirror still serves"
    );
}
