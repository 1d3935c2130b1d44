//! The fuzzing harness of `tests/fuzz_*.rs`: seeds from `tests/fuzz/corpus/<target>/`,
//! mutated or replaced by arbitrary bytes, fed to a target through proptest's runner.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// `n` cases, times `FUZZ_SCALE` (default 1) for longer runs by hand.
pub fn cases(n: u32) -> u32 {
    let scale: u32 = std::env::var("FUZZ_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    n.saturating_mul(scale.max(1))
}

/// The seeds of `target`, sorted by file name.
pub fn bytes(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

use std::path::Path;

/// Bytes that mean something in JSON, TOML, CSV, AMI and XML.
const SPECIAL: &[u8] = b"\"{}[],:\\\r\n\0=#<>&/';";

/// One edit of a seed: at `pos` (modulo the length), do `op` with `byte`.
type Edit = (usize, u8, u8);

fn mutate(seed: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut out = seed.to_vec();
    for &(pos, byte, op) in edits {
        let at = pos % (out.len() + 1);
        match op % 5 {
            0 if at < out.len() => out[at] = byte,
            1 => out.insert(at, byte),
            2 if at < out.len() => {
                out.remove(at);
            }
            3 => out.truncate(at),
            // An interesting byte for the formats at hand.
            _ => out.insert(at, SPECIAL[usize::from(byte) % SPECIAL.len()]),
        }
    }
    out
}

/// Seeds mutated (three in four) or arbitrary bytes (one in four).
fn inputs(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let count = seeds.len();
    prop_oneof![
        1 => vec(any::<u8>(), 0..1024),
        3 => (0..count, vec((any::<usize>(), any::<u8>(), any::<u8>()), 0..12))
            .prop_map(move |(i, edits)| mutate(&seeds[i], &edits)),
    ]
}

/// Runs `target` on `cases` inputs, the seeds themselves first.
pub fn run(name: &str, cases: u32, target: impl Fn(Vec<u8>)) {
    let seeds = bytes(name);
    for seed in &seeds {
        target(seed.clone());
    }
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let result = runner.run(&inputs(seeds), |input| {
        target(input);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
}

/// Counts of one target's inputs, printed at the end.
pub struct Tally {
    name: &'static str,
    accepted: AtomicUsize,
    refused: AtomicUsize,
}

impl Tally {
    pub fn new(name: &'static str) -> Tally {
        Tally {
            name,
            accepted: AtomicUsize::new(0),
            refused: AtomicUsize::new(0),
        }
    }

    pub fn accepted(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
    }

    pub fn refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    pub fn total(&self) -> usize {
        self.accepted.load(Ordering::Relaxed) + self.refused.load(Ordering::Relaxed)
    }

    pub fn refused_count(&self) -> usize {
        self.refused.load(Ordering::Relaxed)
    }

    /// Prints the figures (`--no-capture` shows them) and checks both kinds were seen.
    pub fn report(&self) {
        let accepted = self.accepted.load(Ordering::Relaxed);
        let refused = self.refused.load(Ordering::Relaxed);
        eprintln!(
            "fuzz {}: {} executions, {accepted} accepted, {refused} refused",
            self.name,
            accepted + refused
        );
        assert!(refused > 0, "{}: nothing was refused", self.name);
    }
}
