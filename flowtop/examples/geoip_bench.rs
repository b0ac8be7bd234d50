//! GeoIP lookup rate and memory, on a generated City database:
//!
//! ```text
//! cargo run --release -p flowtop --example geoip_bench [NETWORKS]
//! ```
//!
//! Prints lookups per second straight from the database and through the
//! `GeoCache` (the rate the table sees for addresses it has met before),
//! and how much resident memory opening the database costs. A measurement,
//! not a test: numbers depend on the machine and its load.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use flowtop::enrich::geoip::{self, GeoCache};
use flowtop_testkit::mmdb::{city_record, Writer};

fn rss() -> u64 {
    // SAFETY: malloc_trim only returns free heap to the system.
    unsafe { libc::malloc_trim(0) };
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn mib(n: u64) -> f64 {
    n as f64 / f64::from(1 << 20)
}

fn main() {
    let networks: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(300_000);
    let dir = std::env::temp_dir().join(format!("flowtop-geoip-bench-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("{}: {e}", dir.display());
        std::process::exit(1);
    }
    let path = dir.join("GeoLite2-City.mmdb");
    {
        let mut w = Writer::new("GeoLite2-City", 6);
        for i in 0..networks {
            let net = Ipv4Addr::from(0x0100_0000u32.wrapping_add(i << 8));
            let rec = city_record("GB", "United Kingdom", &format!("City number {i}"));
            if let Err(e) = w.insert(IpAddr::V4(net), 24, rec) {
                eprintln!("{e}");
                std::process::exit(1);
            }
        }
        if let Err(e) = w.write(&path) {
            eprintln!("{}: {e}", path.display());
            std::process::exit(1);
        }
    }
    let before = rss();
    let (geo, notices) = geoip::open(std::slice::from_ref(&dir));
    let after = rss();
    let size = std::fs::metadata(&path).map_or(0, |m| m.len());
    let _ = std::fs::remove_dir_all(&dir);
    let Some(geo) = geo else {
        eprintln!("{notices:?}");
        std::process::exit(1);
    };
    println!(
        "{networks} networks: file {:.1} MiB, resident memory +{:.1} MiB after opening",
        mib(size),
        mib(after.saturating_sub(before))
    );
    // 10 000 distinct public addresses, visited round robin.
    let addrs: Vec<IpAddr> = (0..10_000u32)
        .map(|i| {
            IpAddr::V4(Ipv4Addr::from(
                0x0100_0000u32.wrapping_add(((i * 7) % networks) << 8) + 9,
            ))
        })
        .collect();
    let n = 2_000_000;
    let t = Instant::now();
    for i in 0..n {
        std::hint::black_box(geo.lookup(addrs[i % addrs.len()]));
    }
    let uncached = n as f64 / t.elapsed().as_secs_f64();
    let mut cache = GeoCache::new(geo);
    let t = Instant::now();
    for i in 0..n {
        std::hint::black_box(cache.get(addrs[i % addrs.len()]));
    }
    let cached = n as f64 / t.elapsed().as_secs_f64();
    println!("lookups/s: {uncached:.0} from the database, {cached:.0} from the GeoIP cache");
}
