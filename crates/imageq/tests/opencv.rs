//! imageq's blur scores against OpenCV's on real photos, and the blur threshold's separation.
//!
//! Needs STOREFLEET_PHOTOS (scripts/fetch-photos.sh prints it) and STOREFLEET_IMAGES_PY (the
//! python of scripts/images-env.sh); without them it prints a skip line and passes.

use std::path::{Path, PathBuf};
use std::process::Command;

use imageq::{blur_score, decode_gray, normalise, Limits, Policy};

struct Scored {
    name: String,
    sharp_set: bool,
    ours: f64,
    theirs: f64,
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("png" | "jpg")))
        .collect();
    files.sort();
    files
}

fn reference_scores(python: &str, files: &[PathBuf]) -> Vec<f64> {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/python/images_reference.py");
    let output = Command::new(python)
        .arg(script)
        .arg("score")
        .args(files)
        .output()
        .expect("run images_reference.py");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines = String::from_utf8(output.stdout).unwrap();
    let scores: Vec<f64> = lines
        .lines()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            value["blur"]
                .as_f64()
                .unwrap_or_else(|| panic!("no score: {line}"))
        })
        .collect();
    assert_eq!(scores.len(), files.len());
    scores
}

fn ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && values[order[j + 1]] == values[order[i]] {
            j += 1;
        }
        for k in i..=j {
            ranks[order[k]] = (i + j) as f64 / 2.0;
        }
        i = j + 1;
    }
    ranks
}

fn spearman(a: &[f64], b: &[f64]) -> f64 {
    let (ra, rb) = (ranks(a), ranks(b));
    let mean = (a.len() - 1) as f64 / 2.0;
    let cov: f64 = ra
        .iter()
        .zip(&rb)
        .map(|(x, y)| (x - mean) * (y - mean))
        .sum();
    let var_a: f64 = ra.iter().map(|x| (x - mean).powi(2)).sum();
    let var_b: f64 = rb.iter().map(|y| (y - mean).powi(2)).sum();
    cov / (var_a * var_b).sqrt()
}

#[test]
fn blur_scores_agree_with_opencv_and_separate_sharp_from_blurred() {
    let (Ok(photos), Ok(python)) = (
        std::env::var("STOREFLEET_PHOTOS"),
        std::env::var("STOREFLEET_IMAGES_PY"),
    ) else {
        println!("skipped: set STOREFLEET_PHOTOS and STOREFLEET_IMAGES_PY (scripts/fetch-photos.sh, scripts/images-env.sh)");
        return;
    };
    let photos = PathBuf::from(photos);
    let sharp = files(&photos.join("sharp"));
    let blurred = files(&photos.join("blurred"));
    let all: Vec<PathBuf> = sharp.iter().chain(&blurred).cloned().collect();
    let theirs = reference_scores(&python, &all);
    let policy = Policy::default();
    let scored: Vec<Scored> = all
        .iter()
        .zip(theirs)
        .map(|(path, theirs)| {
            let bytes = std::fs::read(path).unwrap();
            let (_, gray) = decode_gray(&bytes, &Limits::default())
                .unwrap_or_else(|e| panic!("{}: {}", path.display(), e.detail()));
            let ours = blur_score(&normalise(&gray, policy.working_side));
            Scored {
                name: path.file_name().unwrap().to_string_lossy().into_owned(),
                sharp_set: path.parent().unwrap().ends_with("sharp"),
                ours,
                theirs,
            }
        })
        .collect();

    let threshold = policy.blur_threshold;
    let mut max_relative = (0.0f64, String::new());
    let mut max_relative_png = 0.0f64;
    for s in &scored {
        let relative = (s.ours - s.theirs).abs() / s.theirs.max(1e-9);
        if relative > max_relative.0 {
            max_relative = (relative, s.name.clone());
        }
        if s.name.ends_with(".png") {
            max_relative_png = max_relative_png.max(relative);
        }
        println!(
            "{:<44} {:>7} ours {:>10.2} opencv {:>10.2} rel {:.2e}",
            s.name,
            if s.sharp_set { "sharp" } else { "blurred" },
            s.ours,
            s.theirs,
            relative
        );
    }
    let ours: Vec<f64> = scored.iter().map(|s| s.ours).collect();
    let theirs: Vec<f64> = scored.iter().map(|s| s.theirs).collect();
    let rho = spearman(&ours, &theirs);
    let disagreements: Vec<&str> = scored
        .iter()
        .filter(|s| (s.ours >= threshold) != (s.theirs >= threshold))
        .map(|s| s.name.as_str())
        .collect();
    let lowest_sharp = scored
        .iter()
        .filter(|s| s.sharp_set)
        .map(|s| (s.ours, &s.name))
        .min_by(|a, b| a.0.total_cmp(&b.0));
    let highest_blurred = scored
        .iter()
        .filter(|s| !s.sharp_set)
        .map(|s| (s.ours, &s.name))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    println!(
        "{} images: spearman {rho:.5}; max relative difference {:.2e} ({}), PNG only {:.2e}; \
         verdict disagreements at {threshold}: {disagreements:?}",
        scored.len(),
        max_relative.0,
        max_relative.1,
        max_relative_png
    );
    println!("lowest sharp {lowest_sharp:?}, highest blurred {highest_blurred:?}");
    let misjudged: Vec<String> = scored
        .iter()
        .filter(|s| (s.ours >= threshold) != s.sharp_set)
        .map(|s| format!("{} ({:.1})", s.name, s.ours))
        .collect();
    println!("misjudged at {threshold}: {misjudged:?}");

    assert!(rho >= 0.99, "spearman {rho}");
    assert!(
        disagreements.is_empty(),
        "verdicts differ from OpenCV's on {disagreements:?}"
    );
    assert!(
        max_relative_png < 1e-9,
        "PNG scores should be OpenCV's exactly: {max_relative_png}"
    );
    assert!(misjudged.is_empty(), "misjudged: {misjudged:?}");
}
