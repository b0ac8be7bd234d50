//! Mutation fuzzer over the committed corpus, for stable Rust (no
//! sanitizers, no coverage feedback): every target of
//! `flowtop_testkit::fuzzing::TARGETS` gets inputs made from its seed files by
//! random byte-level mutations (bit flips, interesting values over length
//! fields, insertions, deletions, duplications, splices with another seed,
//! truncation) for a bounded time. Built with the dev profile, integer
//! overflow panics too.
//!
//! ```text
//! fuzz [--secs N] [--seed S] [--corpus DIR] [TARGET...]
//! ```
//!
//! `--secs` is per target (default 10). A panicking input is saved under
//! `DIR/../crashes/TARGET-HASH` and the run exits 1. Prints one line per
//! target: executions, seeds, time.

use std::panic;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use flowtop_testkit::fuzzing::TARGETS;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const INTERESTING_8: &[u8] = &[0, 1, 0x7f, 0x80, 0xff, 4, 8, 16, 0x10];
const INTERESTING_16: &[u16] = &[0, 1, 4, 8, 0x7fff, 0x8000, 0xffff, 0x8001, 0x0100, 3, 5];
const INTERESTING_32: &[u32] = &[0, 1, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff, 16, 20, 0x0001_0000];

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>], input: &mut Vec<u8>) {
    let rounds = 1 + rng.below(8);
    for _ in 0..rounds {
        let len = input.len();
        match rng.below(10) {
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                input[i] = INTERESTING_8[rng.below(INTERESTING_8.len())];
            }
            2 if len > 1 => {
                let i = rng.below(len - 1);
                let v = INTERESTING_16[rng.below(INTERESTING_16.len())];
                let b = if rng.below(2) == 0 {
                    v.to_le_bytes()
                } else {
                    v.to_be_bytes()
                };
                input[i..i + 2].copy_from_slice(&b);
            }
            3 if len > 3 => {
                let i = rng.below(len - 3);
                let v = INTERESTING_32[rng.below(INTERESTING_32.len())];
                let b = if rng.below(2) == 0 {
                    v.to_le_bytes()
                } else {
                    v.to_be_bytes()
                };
                input[i..i + 4].copy_from_slice(&b);
            }
            4 => {
                let i = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                input.splice(i..i, bytes);
            }
            5 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(64));
                input.drain(i..i + n);
            }
            6 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(64));
                let chunk = input[i..i + n].to_vec();
                let at = rng.below(len + 1);
                input.splice(at..at, chunk);
            }
            7 if !seeds.is_empty() => {
                let other = &seeds[rng.below(seeds.len())];
                if !other.is_empty() {
                    let i = rng.below(other.len());
                    let n = 1 + rng.below(other.len() - i);
                    let at = rng.below(len + 1);
                    input.splice(at..at, other[i..i + n].iter().copied());
                }
            }
            8 if len > 0 => input.truncate(rng.below(len)),
            9 if len > 0 => {
                // Add to a byte (length and type fields off by a little).
                let i = rng.below(len);
                input[i] = input[i].wrapping_add((rng.below(33) as u8).wrapping_sub(16));
            }
            _ => {}
        }
    }
    // Bound the input size (the targets' cost grows with it).
    input.truncate(1 << 16);
}

fn load_seeds(dir: &Path) -> Vec<Vec<u8>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    paths.sort();
    paths.iter().filter_map(|p| std::fs::read(p).ok()).collect()
}

fn hash(bytes: &[u8]) -> u64 {
    // FNV-1a: a stable name for a crash file.
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

fn main() -> ExitCode {
    let mut secs = 10.0f64;
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        | 1;
    let mut corpus = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut only: Vec<String> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--secs" => secs = args.next().and_then(|s| s.parse().ok()).unwrap_or(secs),
            "--seed" => seed = args.next().and_then(|s| s.parse().ok()).unwrap_or(seed),
            "--corpus" => corpus = args.next().map(PathBuf::from).unwrap_or(corpus),
            "-h" | "--help" => {
                println!("usage: fuzz [--secs N] [--seed S] [--corpus DIR] [TARGET...]");
                return ExitCode::SUCCESS;
            }
            t => only.push(t.to_owned()),
        }
    }
    for t in &only {
        if flowtop_testkit::fuzzing::target(t).is_none() {
            eprintln!("fuzz: unknown target {t}");
            return ExitCode::from(2);
        }
    }
    println!(
        "fuzz: seed {seed}, {secs} s per target, corpus {}",
        corpus.display()
    );
    let mut rng = Rng(seed);
    // Panics are caught and reported once, with the input saved.
    panic::set_hook(Box::new(|_| {}));
    for (name, target) in TARGETS {
        if !only.is_empty() && !only.iter().any(|t| t == name) {
            continue;
        }
        let seeds = load_seeds(&corpus.join(name));
        if seeds.is_empty() {
            eprintln!("fuzz: {name}: no seed files in {}", corpus.join(name).display());
            return ExitCode::FAILURE;
        }
        let t0 = Instant::now();
        let deadline = t0 + Duration::from_secs_f64(secs);
        let mut execs: u64 = 0;
        // The seeds themselves first, then mutants.
        let mut queue: Vec<Vec<u8>> = seeds.clone();
        loop {
            let input = match queue.pop() {
                Some(i) => i,
                None => {
                    let mut i = seeds[rng.below(seeds.len())].clone();
                    mutate(&mut rng, &seeds, &mut i);
                    i
                }
            };
            let result = panic::catch_unwind(|| target(&input));
            execs += 1;
            if let Err(e) = result {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default();
                let dir = corpus.parent().unwrap_or(&corpus).join("crashes");
                let _ = std::fs::create_dir_all(&dir);
                let file = dir.join(format!("{name}-{:016x}", hash(&input)));
                let _ = std::fs::write(&file, &input);
                eprintln!(
                    "fuzz: {name}: PANIC after {execs} executions: {msg}\n  input saved to {} ({} bytes)",
                    file.display(),
                    input.len()
                );
                return ExitCode::FAILURE;
            }
            if execs.is_multiple_of(64) && Instant::now() >= deadline {
                break;
            }
        }
        println!(
            "fuzz: {name}: {execs} executions in {:.1} s from {} seeds, no panic",
            t0.elapsed().as_secs_f64(),
            seeds.len()
        );
    }
    ExitCode::SUCCESS
}
