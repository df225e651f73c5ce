//! The memory floor under the conntrack table on this machine: how long the loads a packet
//! needs take by themselves, without any table logic, for a table of `n` entries laid out like
//! ours (a 256-byte entry slab and an 8-byte-slot index at 20 bytes per key) and visited in a
//! uniformly random order. Usage: `memfloor <entries> [groups of 16 per pass]`. Prints CPU ns per
//! packet for:
//! - `update`: read the four lines of one random entry (what `update` needs), one packet at a
//!   time (each packet's loads wait for the previous packet's, as behind a mutex's atomic) and
//!   16 packets at a time (loads of a batch in flight together);
//!   (`update + write` also writes two of those lines, as processing a packet does);
//! - `lookup`: read a random index slot, then the entry it names (a dependent load), likewise.
//!
//! The difference between these figures at 1 000 and at 1 000 000 entries is what no table
//! code can remove; `profile` measures the table itself the same way.

use std::hint::black_box;

const ENTRY_WORDS: usize = 32; // 256 bytes

fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[inline(always)]
fn entry_lines(slab: &[u64], e: usize) -> u64 {
    let b = e * ENTRY_WORDS;
    slab[b] ^ slab[b + 8] ^ slab[b + 16] ^ slab[b + 24]
}

/// Zero, computed from `acc` so the next address waits for the previous loads (slab words are
/// 1, so `acc` is 0 or 1 and never the constant).
#[inline(always)]
fn dep(acc: u64) -> usize {
    usize::from(acc == 0x5555_5555_5555_5555)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args
        .get(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let groups: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(125_000);
    // As `Table::new` sizes it for `max_entries = n + n/8 + 1024`: 1.25 slots per entry.
    let slots = (n + n / 8 + 1024) * 5 / 4;
    let slab = vec![1u64; slots * ENTRY_WORDS];
    let index_len = (2 * slots * 5 / 4).next_power_of_two();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    // Index slots name random entries (the low bits of a slot value).
    let index: Vec<u64> = (0..index_len)
        .map(|_| rng.next() % n.max(1) as u64)
        .collect();
    let ops = groups * 16;
    let entries: Vec<usize> = (0..ops).map(|_| (rng.next() % n as u64) as usize).collect();
    let homes: Vec<usize> = (0..ops)
        .map(|_| (rng.next() % index_len as u64) as usize)
        .collect();
    println!(
        "n={n}: entry slab {} MB, index {} MB, {ops} random packets",
        (slab.len() * 8) >> 20,
        (index.len() * 8) >> 20
    );
    let report = |name: &str, f: &dyn Fn() -> u64| {
        let mut best = u64::MAX;
        for _ in 0..3 {
            let c = cpu_ns();
            black_box(f());
            best = best.min(cpu_ns() - c);
        }
        println!("{name:28} {:6.1} ns/packet", best as f64 / ops as f64);
    };
    // One at a time: the next address depends on the previous load (as the mutex's locked
    // instruction orders each packet's loads after the previous packet's).
    report("update, one at a time", &|| {
        let mut acc = 0u64;
        for &e in &entries {
            acc ^= entry_lines(&slab, e + dep(acc));
        }
        acc
    });
    report("update, 16 at a time", &|| {
        let mut acc = 0u64;
        for g in entries.chunks(16) {
            for &e in g {
                acc ^= entry_lines(&slab, e);
            }
        }
        acc
    });
    // As `update` does: also write a word of each entry (counters, expiry), so every visited
    // line is written back to memory later.
    let written = std::cell::RefCell::new(vec![1u64; slots * ENTRY_WORDS]);
    report("update + write, 16 at a time", &|| {
        let mut slab = written.borrow_mut();
        let mut acc = 0u64;
        for g in entries.chunks(16) {
            for &e in g {
                acc ^= entry_lines(&slab, e);
            }
            for &e in g {
                slab[e * ENTRY_WORDS + 12] = acc;
                slab[e * ENTRY_WORDS + 24] ^= 1;
            }
        }
        acc
    });
    report("lookup, one at a time", &|| {
        let mut acc = 0u64;
        for &h in &homes {
            let e = index[h + dep(acc)] as usize;
            acc ^= entry_lines(&slab, e);
        }
        acc
    });
    report("lookup, 16 at a time", &|| {
        let mut acc = 0u64;
        let mut found = [0usize; 16];
        for g in homes.chunks(16) {
            for (f, &h) in found.iter_mut().zip(g) {
                *f = index[h] as usize;
            }
            for &e in &found[..g.len()] {
                acc ^= entry_lines(&slab, e);
            }
        }
        acc
    });
}
