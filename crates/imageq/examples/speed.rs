//! Single-thread decode + normalise + blur loop over a directory of JPEGs, for profiling:
//! `cargo run --release -p imageq --example speed -- DIR [SECONDS] [assess]`.

use std::time::Instant;

use imageq::{assess, blur_score, decode_gray, normalise, Limits, Policy};

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args.next().expect("usage: speed DIR [SECONDS] [assess]");
    let seconds: f64 = args.next().map_or(5.0, |s| s.parse().expect("seconds"));
    let full = args.next().as_deref() == Some("assess");
    let mut files: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .map(|p| std::fs::read(p).expect("read"))
        .collect();
    files.sort();
    let (policy, limits) = (Policy::default(), Limits::default());
    let (mut images, mut checksum) = (0u64, 0.0);
    let started = Instant::now();
    while started.elapsed().as_secs_f64() < seconds {
        for bytes in &files {
            checksum += if full {
                assess(bytes, None, &policy).blur_score.unwrap_or(0.0)
            } else {
                let (_, gray) = decode_gray(bytes, &limits).expect("decode");
                blur_score(&normalise(&gray, policy.working_side))
            };
            images += 1;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{images} images in {elapsed:.2}s: {:.1}/s ({checksum:.0})",
        images as f64 / elapsed
    );
}
