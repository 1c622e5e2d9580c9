//! `fleet bench images-cpu`: imageq's per-core throughput on ~1 MP JPEGs against OpenCV's, in
//! the same run, both single-threaded and reading from bytes already in memory.
//!
//! Ours: decode_gray + normalise + blur_score, and the full `assess`. OpenCV
//! (tests/python/images_reference.py bench): `cv2.imdecode(IMREAD_GRAYSCALE)` +
//! `cv2.Laplacian(CV_64F).var()` with `cv2.setNumThreads(1)`. Each side is also timed decoding
//! only, to show where the time goes. The runs alternate in one process tree, so load from
//! other builds on the machine hits both sides alike.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use crate::{Error, Result};

/// Figures from one run; rates are images (or megapixels) per second on one core.
#[derive(Debug, Clone)]
pub struct CpuReport {
    pub files: usize,
    pub megapixels_per_image: f64,
    /// decode_gray + normalise + blur_score.
    pub ours_images_per_sec: f64,
    /// Full `assess` (header, decode, normalise, blur, tiers; watermark off by default).
    pub ours_assess_images_per_sec: f64,
    pub ours_decode_images_per_sec: f64,
    /// imdecode(GRAYSCALE) + Laplacian(CV_64F) + var.
    pub opencv_images_per_sec: f64,
    pub opencv_decode_images_per_sec: f64,
    pub opencv_version: String,
}

impl CpuReport {
    /// How many times OpenCV's time per image ours takes (< 1 is faster).
    pub fn time_ratio(&self) -> f64 {
        self.opencv_images_per_sec / self.ours_images_per_sec
    }

    pub fn print(&self) {
        let mp = self.megapixels_per_image;
        println!(
            "images-cpu: {} JPEGs of {mp:.2} MP, one core, bytes in memory",
            self.files
        );
        let line = |name: &str, rate: f64| {
            println!(
                "  {name:<44} {rate:>7.1} images/s  {:>6.1} MP/s  {:>6.2} ms/image",
                rate * mp,
                1000.0 / rate
            );
        };
        line("imageq decode+normalise+blur", self.ours_images_per_sec);
        line("imageq assess", self.ours_assess_images_per_sec);
        line("imageq decode only", self.ours_decode_images_per_sec);
        line(
            &format!("opencv {} imdecode+Laplacian+var", self.opencv_version),
            self.opencv_images_per_sec,
        );
        line("opencv imdecode only", self.opencv_decode_images_per_sec);
        println!(
            "  time per image, imageq / opencv: {:.2} (target <= 1.5); decode only: {:.2}",
            self.time_ratio(),
            self.opencv_decode_images_per_sec / self.ours_decode_images_per_sec
        );
    }
}

/// Runs each measurement for about `seconds`.
pub fn run(photos_bench_dir: &Path, python: &Path, seconds: f64) -> Result<CpuReport> {
    let io = |what: String| move |source| Error::Io { what, source };
    let mut files = Vec::new();
    let entries = std::fs::read_dir(photos_bench_dir)
        .map_err(io(format!("reading {}", photos_bench_dir.display())))?;
    for entry in entries {
        let path = entry
            .map_err(io(format!("reading {}", photos_bench_dir.display())))?
            .path();
        if path.extension().is_some_and(|e| e == "jpg" || e == "jpeg") {
            files.push(std::fs::read(&path).map_err(io(format!("reading {}", path.display())))?);
        }
    }
    if files.is_empty() {
        return Err(Error::Missing(format!(
            "no JPEG files in {} (scripts/fetch-photos.sh makes them)",
            photos_bench_dir.display()
        )));
    }
    let policy = imageq::Policy::default();
    let mut pixels = 0u64;
    for bytes in &files {
        let (header, _) = imageq::decode_gray(bytes, &policy.limits)
            .map_err(|e| Error::Check(format!("a bench photo does not decode: {}", e.detail())))?;
        pixels += u64::from(header.width) * u64::from(header.height);
    }
    let megapixels_per_image = pixels as f64 / 1e6 / files.len() as f64;

    let pipeline = |bytes: &[u8]| -> f64 {
        match imageq::decode_gray(bytes, &policy.limits) {
            Ok((_, gray)) => imageq::blur_score(&imageq::normalise(&gray, policy.working_side)),
            Err(_) => 0.0,
        }
    };
    let ours_images_per_sec = rate(&files, seconds, pipeline);
    let opencv = reference(photos_bench_dir, python, seconds, false)?;
    let ours_assess_images_per_sec = rate(&files, seconds, |bytes| {
        imageq::assess(bytes, Some("image/jpeg"), &policy)
            .blur_score
            .unwrap_or(0.0)
    });
    let ours_decode_images_per_sec = rate(&files, seconds, |bytes| {
        imageq::decode_gray(bytes, &policy.limits).map_or(0.0, |(_, g)| f64::from(g.pixels[0]))
    });
    let opencv_decode = reference(photos_bench_dir, python, seconds, true)?;
    Ok(CpuReport {
        files: files.len(),
        megapixels_per_image,
        ours_images_per_sec,
        ours_assess_images_per_sec,
        ours_decode_images_per_sec,
        opencv_images_per_sec: opencv.0,
        opencv_decode_images_per_sec: opencv_decode.0,
        opencv_version: opencv.1,
    })
}

/// Images per second of `work` over the files, repeated for at least `seconds`.
fn rate(files: &[Vec<u8>], seconds: f64, work: impl Fn(&[u8]) -> f64) -> f64 {
    for bytes in files {
        std::hint::black_box(work(bytes)); // warm-up pass
    }
    let started = Instant::now();
    let mut images = 0u64;
    loop {
        for bytes in files {
            std::hint::black_box(work(std::hint::black_box(bytes)));
            images += 1;
        }
        let elapsed = started.elapsed().as_secs_f64();
        if elapsed >= seconds {
            return images as f64 / elapsed;
        }
    }
}

/// (images per second, OpenCV version) from the reference script's bench mode.
fn reference(dir: &Path, python: &Path, seconds: f64, decode_only: bool) -> Result<(f64, String)> {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/python/images_reference.py");
    let mut command = Command::new(python);
    command
        .arg(&script)
        .arg("bench")
        .arg(dir)
        .arg("--seconds")
        .arg(seconds.to_string());
    if decode_only {
        command.arg("--decode-only");
    }
    let output = command.output().map_err(|source| Error::Io {
        what: format!("running {} {}", python.display(), script.display()),
        source,
    })?;
    if !output.status.success() {
        return Err(Error::Check(format!(
            "images_reference.py bench failed: {}",
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    let value: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let rate = value["images_per_sec"]
        .as_f64()
        .ok_or_else(|| Error::Missing("images_per_sec in the OpenCV bench output".into()))?;
    let version = value["opencv"].as_str().unwrap_or("?").to_owned();
    Ok((rate, version))
}
