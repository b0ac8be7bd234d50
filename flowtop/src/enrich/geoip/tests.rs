use super::*;
use flowtop_testkit::mmdb::{city_record, country_record, Value, Writer};
use proptest::prelude::*;

/// A temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("flowtop-geoip-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("mkdir");
        TempDir(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn city_db(db_type: &str) -> Vec<u8> {
    let mut w = Writer::new(db_type, 6);
    for (cidr, cc, city) in [
        ("81.2.69.0/24", "GB", "London"),
        ("81.2.69.160/27", "GB", "Oxford"),
        ("2001:480::/32", "US", "San Diego"),
        ("10.0.0.0/8", "XX", "Nowhere"),
        ("89.160.0.0/16", "SE", ""),
    ] {
        w.insert_cidr(cidr, city_record(cc, cc, city)).expect("insert");
    }
    // A record with only a registered country.
    let rec = Value::map([("registered_country", Value::map([("iso_code", Value::str("NL"))]))]);
    w.insert_cidr("1.1.1.0/24", rec).expect("insert");
    w.to_bytes()
}

fn country_db(db_type: &str) -> Vec<u8> {
    let mut w = Writer::new(db_type, 6);
    w.insert_cidr("81.0.0.0/8", country_record("DE", "Germany"))
        .expect("insert");
    w.insert_cidr("2a00::/12", country_record("FR", "France"))
        .expect("insert");
    w.to_bytes()
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn cc(g: &Geo) -> Option<&str> {
    g.country.as_deref()
}

fn city(g: &Geo) -> Option<&str> {
    g.city.as_deref()
}

#[test]
fn shareable_across_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<GeoIp>();
    send_sync::<GeoCache>();
    send_sync::<Geo>();
}

#[test]
fn without_lookup_has_the_scope_only() {
    let g = Geo::without_lookup(ip("192.168.1.1"));
    assert_eq!((g.scope, g.country, g.city), (Scope::Private, None, None));
    assert_eq!(Geo::without_lookup(ip("8.8.8.8")).scope, Scope::Public);
}

#[test]
fn search_path_order() {
    let p = search_path(Some(Path::new("/opt/geo")));
    let want: Vec<PathBuf> = [
        "/opt/geo",
        "/usr/share/GeoIP",
        "/var/lib/GeoIP",
        "/usr/local/share/GeoIP",
        "/var/lib/flowtop",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    assert_eq!(p, want);
    assert_eq!(search_path(None), want[1..].to_vec());
}

#[test]
fn city_lookups_v4_v6_and_mapped() {
    let d = TempDir::new("city");
    std::fs::write(d.path().join("GeoLite2-City.mmdb"), city_db("GeoLite2-City")).expect("write");
    let (g, notices) = open(&[d.path().to_path_buf()]);
    assert!(notices.is_empty(), "{notices:?}");
    let g = g.expect("opened");
    assert!(g.has_city());
    assert_eq!(g.databases().len(), 1);
    assert_eq!(g.databases()[0].database_type, "GeoLite2-City");
    let l = g.lookup(ip("81.2.69.1"));
    assert_eq!(
        (l.scope, cc(&l), city(&l)),
        (Scope::Public, Some("GB"), Some("London"))
    );
    let l = g.lookup(ip("81.2.69.161"));
    assert_eq!((cc(&l), city(&l)), (Some("GB"), Some("Oxford")));
    let l = g.lookup(ip("::ffff:81.2.69.161"));
    assert_eq!((cc(&l), city(&l)), (Some("GB"), Some("Oxford")));
    let l = g.lookup(ip("2001:480:1::1"));
    assert_eq!((cc(&l), city(&l)), (Some("US"), Some("San Diego")));
    // An empty city name is no city.
    let l = g.lookup(ip("89.160.20.1"));
    assert_eq!((cc(&l), city(&l)), (Some("SE"), None));
    let l = g.lookup(ip("1.1.1.1"));
    assert_eq!(
        (cc(&l), city(&l)),
        (Some("NL"), None),
        "registered_country fallback"
    );
    let l = g.lookup(ip("8.8.8.8"));
    assert_eq!((l.scope, cc(&l), city(&l)), (Scope::Public, None, None));
    // The database has 10/8, but private addresses are never looked up.
    let l = g.lookup(ip("10.1.2.3"));
    assert_eq!((l.scope, cc(&l), city(&l)), (Scope::Private, None, None));
    assert_eq!(g.lookup(ip("::1")).scope, Scope::Loopback);
}

#[test]
fn country_database_when_there_is_no_city_one() {
    let d = TempDir::new("country");
    std::fs::write(
        d.path().join("GeoLite2-Country.mmdb"),
        country_db("GeoLite2-Country"),
    )
    .expect("write");
    let (g, notices) = open(&[d.path().to_path_buf()]);
    assert!(notices.is_empty(), "{notices:?}");
    let g = g.expect("opened");
    assert!(!g.has_city());
    let l = g.lookup(ip("81.2.69.1"));
    assert_eq!((cc(&l), city(&l)), (Some("DE"), None));
    let l = g.lookup(ip("2a01::1"));
    assert_eq!((cc(&l), city(&l)), (Some("FR"), None));
}

#[test]
fn missing_databases_give_exactly_one_notice() {
    let d = TempDir::new("missing");
    let dirs = [d.path().to_path_buf(), d.path().join("nope")];
    let (g, notices) = open(&dirs);
    assert!(g.is_none());
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert!(
        notices[0].starts_with("no GeoIP database found in "),
        "{notices:?}"
    );
    assert!(
        notices[0].contains(&d.path().display().to_string()),
        "{notices:?}"
    );
    assert!(notices[0].contains("flowtop -u"), "{notices:?}");
}

#[test]
fn corrupt_truncated_and_wrong_type_files_are_skipped_with_a_notice() {
    let (a, b, c) = (
        TempDir::new("bad-a"),
        TempDir::new("bad-b"),
        TempDir::new("bad-c"),
    );
    let good = city_db("GeoLite2-City");
    // a: garbage City file and a Country file of the wrong type.
    std::fs::write(a.path().join("GeoIP2-City.mmdb"), b"this is not a database").expect("write");
    std::fs::write(a.path().join("GeoLite2-City.mmdb"), &good[..good.len() / 2]).expect("write");
    // b: a Country database under a City name.
    std::fs::write(
        b.path().join("GeoLite2-City.mmdb"),
        country_db("GeoLite2-Country"),
    )
    .expect("write");
    // c: the Country file that is left.
    std::fs::write(
        c.path().join("GeoLite2-Country.mmdb"),
        country_db("GeoLite2-Country"),
    )
    .expect("write");
    let dirs = [
        a.path().to_path_buf(),
        b.path().to_path_buf(),
        c.path().to_path_buf(),
    ];
    let (g, notices) = open(&dirs);
    assert_eq!(notices.len(), 3, "{notices:?}");
    assert!(notices[0].contains("GeoIP2-City.mmdb") && notices[0].contains("not a valid MaxMind DB"));
    assert!(notices[1].contains(&a.path().join("GeoLite2-City.mmdb").display().to_string()));
    assert!(notices[1].contains("not a valid MaxMind DB"), "{notices:?}");
    assert!(notices[2].contains(&b.path().join("GeoLite2-City.mmdb").display().to_string()));
    assert!(notices[2].contains("not a City database"), "{notices:?}");
    let g = g.expect("the Country database is used");
    assert_eq!(cc(&g.lookup(ip("81.2.69.1"))), Some("DE"));
}

#[test]
fn only_bad_files_say_so_and_run_without() {
    let d = TempDir::new("only-bad");
    std::fs::write(d.path().join("GeoLite2-Country.mmdb"), [0u8; 100]).expect("write");
    let (g, notices) = open(&[d.path().to_path_buf()]);
    assert!(g.is_none());
    assert_eq!(notices.len(), 2, "{notices:?}");
    assert!(notices[0].contains("GeoLite2-Country.mmdb"));
    assert!(notices[1].starts_with("no usable GeoIP database"));
}

#[test]
fn file_name_preferences() {
    let (a, b) = (TempDir::new("pref-a"), TempDir::new("pref-b"));
    let city_of = |cityname: &str, db_type: &str| {
        let mut w = Writer::new(db_type, 6);
        w.insert_cidr("81.0.0.0/8", city_record("GB", "GB", cityname))
            .expect("insert");
        w.to_bytes()
    };
    let put = |dir: &TempDir, name: &str, bytes: Vec<u8>| {
        std::fs::write(dir.path().join(name), bytes).expect("write");
    };
    put(&b, "GeoIP2-City.mmdb", city_of("commercial-b", "GeoIP2-City"));
    put(&a, "dbip-city-lite.mmdb", city_of("undated", "DBIP-City-Lite"));
    put(
        &a,
        "dbip-city-lite-2026-09.mmdb",
        city_of("sep", "DBIP-City-Lite"),
    );
    put(
        &a,
        "dbip-city-lite-2026-11.mmdb",
        city_of("nov", "DBIP-City-Lite"),
    );
    put(
        &a,
        "dbip-city-lite-2026-1.mmdb",
        city_of("malformed", "DBIP-City-Lite"),
    );
    let dirs = [a.path().to_path_buf(), b.path().to_path_buf()];
    let which = || {
        let (g, n) = open(&dirs);
        assert!(n.is_empty(), "{n:?}");
        g.expect("opened")
            .lookup(ip("81.1.1.1"))
            .city
            .map(|c| c.to_string())
    };
    // The first directory wins; in it the newest dated DB-IP file.
    assert_eq!(which().as_deref(), Some("nov"));
    put(&a, "GeoLite2-City.mmdb", city_of("geolite", "GeoLite2-City"));
    assert_eq!(which().as_deref(), Some("geolite"));
    put(&a, "GeoIP2-City.mmdb", city_of("commercial-a", "GeoIP2-City"));
    assert_eq!(which().as_deref(), Some("commercial-a"));
    assert_eq!(
        candidates(a.path(), DbKind::City)
            .iter()
            .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
            .collect::<Vec<_>>(),
        [
            "GeoIP2-City.mmdb",
            "GeoLite2-City.mmdb",
            "dbip-city-lite-2026-11.mmdb",
            "dbip-city-lite-2026-09.mmdb",
            "dbip-city-lite.mmdb"
        ]
    );
}

#[test]
fn long_strings_are_capped_at_a_char_boundary() {
    let mut w = Writer::new("GeoLite2-City", 6);
    let long = "é".repeat(200); // 400 bytes, 2 per char
    w.insert_cidr("81.0.0.0/8", city_record(&"Q".repeat(300), "x", &long))
        .expect("insert");
    let g = GeoIp::from_bytes(w.to_bytes(), DbKind::City).expect("valid");
    let l = g.lookup(ip("81.1.1.1"));
    assert_eq!(l.city.as_deref().map(str::len), Some(MAX_STRING));
    assert_eq!(l.country.as_deref().map(str::len), Some(MAX_STRING));
    let mut w = Writer::new("GeoLite2-City", 6);
    w.insert_cidr("81.0.0.0/8", city_record("GB", "x", &format!("a{long}")))
        .expect("insert");
    let g = GeoIp::from_bytes(w.to_bytes(), DbKind::City).expect("valid");
    assert_eq!(
        g.lookup(ip("81.1.1.1")).city.as_deref().map(str::len),
        Some(MAX_STRING - 1)
    );
}

#[test]
fn cache_answers_like_the_database_and_stays_bounded() {
    let g = GeoIp::from_bytes(city_db("GeoLite2-City"), DbKind::City).expect("valid");
    let mut cache = GeoCache::with_capacity(g, 100);
    for round in 0..3 {
        for i in 0..1000u32 {
            let a = IpAddr::V4(std::net::Ipv4Addr::from(0x5102_4500 + i)); // 81.2.69.0 + i
            let want = cache.geoip().lookup(a);
            assert_eq!(cache.get(a), want, "round {round} {a}");
            assert!(cache.len() <= 100);
        }
    }
    assert_eq!(cache.get(ip("10.0.0.1")).scope, Scope::Private);
    let hot = ip("81.2.69.1");
    cache.get(hot);
    for i in 0..49u32 {
        cache.get(IpAddr::V4(std::net::Ipv4Addr::from(0x0808_0000 + i)));
    }
    // hot is in the old generation now; a hit keeps it.
    assert_eq!(cache.get(hot).city.as_deref(), Some("London"));
}

#[test]
fn replaced_and_deleted_files_while_running() {
    let d = TempDir::new("reopen");
    let path = d.path().join("GeoLite2-City.mmdb");
    std::fs::write(&path, city_db("GeoLite2-City")).expect("write");
    let (g, _) = open(&[d.path().to_path_buf()]);
    let mut cache = GeoCache::new(g.expect("opened"));
    assert_eq!(cache.get(ip("81.2.69.1")).city.as_deref(), Some("London"));
    assert!(cache.reopen_if_changed().is_empty(), "unchanged");
    // Replaced by rename, as -u and geoipupdate do.
    let mut w = Writer::new("GeoLite2-City", 6);
    w.insert_cidr("81.2.69.0/24", city_record("GB", "GB", "Leeds"))
        .expect("insert");
    let tmp = d.path().join("new.tmp");
    std::fs::write(&tmp, w.to_bytes()).expect("write");
    std::fs::rename(&tmp, &path).expect("rename");
    let n = cache.reopen_if_changed();
    assert_eq!(n.len(), 1, "{n:?}");
    assert_eq!(cache.get(ip("81.2.69.1")).city.as_deref(), Some("Leeds"));
    // Truncated in place: the copy in memory stays good.
    std::fs::write(&path, b"garbage").expect("write");
    let n = cache.reopen_if_changed();
    assert!(n.len() == 1 && n[0].contains("previous copy"), "{n:?}");
    assert_eq!(cache.get(ip("81.2.69.1")).city.as_deref(), Some("Leeds"));
    std::fs::remove_file(&path).expect("rm");
    let n = cache.reopen_if_changed();
    assert!(n.len() == 1 && n[0].contains("disappeared"), "{n:?}");
    assert!(cache.reopen_if_changed().is_empty(), "reported once");
    assert_eq!(
        cache.geoip().lookup(ip("81.2.69.1")).city.as_deref(),
        Some("Leeds")
    );
}

#[test]
fn ipv4_only_database_answers_v4_and_not_v6() {
    let mut w = Writer::new("GeoLite2-Country", 4);
    w.insert_cidr("81.0.0.0/8", country_record("DE", "DE"))
        .expect("insert");
    let g = GeoIp::from_bytes(w.to_bytes(), DbKind::Country).expect("valid");
    assert_eq!(cc(&g.lookup(ip("81.1.1.1"))), Some("DE"));
    assert_eq!(cc(&g.lookup(ip("::ffff:81.1.1.1"))), Some("DE"));
    assert_eq!(cc(&g.lookup(ip("2a00::1"))), None);
}

#[test]
fn not_a_regular_file_is_skipped() {
    let d = TempDir::new("dir");
    std::fs::create_dir(d.path().join("GeoLite2-City.mmdb")).expect("mkdir");
    let (g, n) = open(&[d.path().to_path_buf()]);
    assert!(g.is_none());
    assert!(n[0].contains("not a regular file"), "{n:?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    /// Whatever the bytes, opening and looking up never panics.
    #[test]
    fn any_file_content_never_panics(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..16),
        cut in any::<prop::sample::Index>(),
        do_cut in any::<bool>(),
    ) {
        let mut bytes = city_db("GeoLite2-City");
        for (at, v) in flips {
            let i = at.index(bytes.len());
            bytes[i] = v;
        }
        if do_cut {
            bytes.truncate(cut.index(bytes.len()));
        }
        if let Ok(g) = GeoIp::from_bytes(bytes, DbKind::City) {
            for a in ["81.2.69.1", "81.2.69.161", "2001:480::1", "1.1.1.1", "200.1.1.1", "2a00::1"] {
                let _ = g.lookup(ip(a));
            }
        }
    }
}
