//! Measures the memory a cached validation costs: 100,000 keys, each with three custom claims,
//! validated through `CachedValidator`, with every allocation counted.
//!
//! ```text
//! cargo run --release --example cache_memory
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use axum_api_key::cache::CachedValidator;
use axum_api_key::{ApiKey, TokenInfo, ValidateError, Validator, validator_fn};

/// Counts the bytes live on the heap.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const ENTRIES: usize = 100_000;

/// A Scalekit-shaped answer: ids of realistic length and three claims.
fn info_for(n: usize) -> TokenInfo {
    TokenInfo::builder(
        format!("apit_{:017}", 10_000_000_000_000_000u64 + n as u64),
        "org_59615193906282635",
    )
    .user(format!("usr_{:017}", 63_261_492_986_167_383u64 + n as u64))
    .claim("environment", "production")
    .claim("team", "payments")
    .claim("tier", "gold")
    .token_suffix(format!("{:04}", n % 10_000))
    .build()
}

fn key_for(n: usize) -> ApiKey {
    ApiKey::new(format!("{:0>77}", format!("K{n}")))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), ValidateError> {
    let upstream = validator_fn(|key: ApiKey| async move {
        let n: usize = key.expose_secret().trim_start_matches('0')[1..]
            .parse()
            .unwrap_or(0);
        Ok::<_, ValidateError>(info_for(n))
    });
    let cache = CachedValidator::builder(upstream)
        .ttl(Duration::from_secs(600))
        .capacity(ENTRIES as u64 * 2)
        // Every key here is a first sight: lift the default upstream rate budget (100/s).
        .max_upstream_rate(u32::MAX)
        .build_standalone();

    // What the answers themselves weigh (the upstream would have built them anyway).
    let before_infos = LIVE.load(Ordering::Relaxed);
    let sample: Vec<TokenInfo> = (0..1_000).map(info_for).collect();
    let info_bytes = (LIVE.load(Ordering::Relaxed) - before_infos) as f64 / sample.len() as f64;
    drop(sample);

    let before = LIVE.load(Ordering::Relaxed);
    for n in 0..ENTRIES {
        cache.validate(&key_for(n)).await?;
    }
    // Let moka apply its pending bookkeeping so the count reflects steady state.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for n in 0..1_000 {
        cache.validate(&key_for(n)).await?;
    }
    let after = LIVE.load(Ordering::Relaxed);
    let per_entry = (after - before) as f64 / ENTRIES as f64;
    println!("entries: {ENTRIES} (stats: {})", cache.stats().entries);
    println!("heap per cached entry: {per_entry:.0} bytes");
    println!("  of which the TokenInfo itself (3 claims, ids, suffix): {info_bytes:.0} bytes");
    println!(
        "  cache overhead per entry (moka's entry, the shared Entry, the mirror's row, the id index): {:.0} bytes",
        per_entry - info_bytes
    );
    println!(
        "1 KiB budget per entry: {}",
        if per_entry <= 1024.0 {
            "met"
        } else {
            "NOT met"
        }
    );
    println!(
        "total for {ENTRIES} entries: {:.1} MiB",
        (after - before) as f64 / (1024.0 * 1024.0)
    );
    Ok(())
}
