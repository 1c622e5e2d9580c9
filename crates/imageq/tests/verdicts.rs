//! Verdicts on well-formed images made in code: orientation, tiers, blur, watermark.

mod support;

use imageq::{assess, decode_gray, normalise, read_header, watermark, Limits, Policy, Reason};
use support::{blurred, draw_text, jpeg, photo, png_rgb, text_width};

#[test]
fn exif_orientation_six_swaps_the_display_size() {
    let bytes = jpeg(&photo(640, 520, 1), 90, Some(6));
    let header = read_header(&bytes, &Limits::default()).unwrap();
    assert_eq!(
        (header.width, header.height, header.orientation),
        (640, 520, 6)
    );
    assert_eq!(header.display_size(), (520, 640));
    let v = assess(&bytes, Some("image/jpeg"), &Policy::default());
    assert_eq!(
        (v.width, v.height, v.orientation),
        (Some(520), Some(640), 6)
    );
    // Orientation 3 (180°) keeps the size.
    let header = read_header(&jpeg(&photo(64, 32, 1), 90, Some(3)), &Limits::default()).unwrap();
    assert_eq!(header.display_size(), (64, 32));
}

#[test]
fn png_gray_matches_libpng_weights() {
    // Pure red, green and blue pixels: (9797, 19234, 3737) · 255 >> 15.
    let data = [255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 10, 10];
    let png = support::png_encode(4, 1, png::ColorType::Rgb, &data);
    let (_, gray) = decode_gray(&png, &Limits::default()).unwrap();
    assert_eq!(gray.pixels, vec![76, 149, 29, 10]);
}

#[test]
fn tiers_follow_the_long_side() {
    let policy = Policy::default();
    let cases = [
        (400, 300, [false, false, false]),
        (900, 500, [true, false, false]),
        (1200, 700, [true, true, false]),
    ];
    for (w, h, [thumbnail, zoom, print]) in cases {
        let v = assess(&png_rgb(&photo(w, h, 3)), None, &policy);
        let tiers = v.tiers.expect("scored");
        assert_eq!(
            (tiers.thumbnail, tiers.zoom, tiers.print),
            (thumbnail, zoom, print),
            "{w}x{h}: {v:?}"
        );
        assert_eq!(
            v.reasons.contains(&Reason::TooSmall),
            w < 500,
            "{w}x{h}: {v:?}"
        );
        assert!(!v.reasons.contains(&Reason::TooBlurry), "{w}x{h}: {v:?}");
    }
}

#[test]
fn a_blurred_copy_is_too_blurry_and_the_original_is_not() {
    let sharp = photo(560, 520, 4);
    let soft = blurred(&sharp, 3);
    let policy = Policy::default();
    let (a, b) = (
        assess(&jpeg(&sharp, 90, None), None, &policy),
        assess(&jpeg(&soft, 90, None), None, &policy),
    );
    assert!(a.ok(), "{a:?}");
    assert_eq!(b.reasons, vec![Reason::TooBlurry], "{b:?}");
    assert!(!b.tiers.unwrap().thumbnail);
}

#[test]
fn policy_validation_lists_every_problem() {
    assert!(Policy::default().validate().is_ok());
    let bad = Policy {
        working_side: 10,
        blur_threshold: f64::NAN,
        zoom_min_side: 100,
        version: "",
        ..Policy::default()
    };
    let problems = bad.validate().unwrap_err();
    for word in ["working_side", "blur_threshold", "tiers", "version"] {
        assert!(problems.contains(word), "{problems}");
    }
}

fn watermark_of(image: &support::Rgb) -> imageq::Watermark {
    let (_, gray) = decode_gray(&png_rgb(image), &Limits::default()).unwrap();
    watermark(&normalise(&gray, 1024))
}

#[test]
fn text_drawn_in_a_corner_or_band_is_suspected() {
    for seed in 0..2u64 {
        let clean = photo(1000, 800, 100 + seed);
        let found = watermark_of(&clean);
        assert!(!found.suspected, "clean photo {seed}: {found:?}");

        // A caption block filling much of the corner: what the heuristic is built to see.
        let text = "@SHOP.COM 2020";
        let mut image = photo(1000, 800, 100 + seed);
        let x = 1000 - text_width(text, 3) - 20;
        for y in (610..780).step_by(30) {
            draw_text(&mut image, x, y, 3, text, [255, 255, 255], 1.0);
        }
        let found = watermark_of(&image);
        assert!(found.suspected, "corner text {seed}: {found:?}");
        assert_eq!(found.region, Some("bottom-right"));

        let mut band = photo(1000, 800, 100 + seed);
        for x in (10..990).step_by(text_width("SAMPLE ", 3) as usize) {
            for y in [370, 400] {
                draw_text(&mut band, x as u32, y, 3, "SAMPLE", [20, 20, 20], 1.0);
            }
        }
        let found = watermark_of(&band);
        assert!(found.suspected, "band text {seed}: {found:?}");
    }
}

#[test]
fn watermark_policy_switch_adds_the_reason() {
    let mut image = photo(1000, 800, 9);
    for y in (610..780).step_by(30) {
        draw_text(
            &mut image,
            720,
            y,
            3,
            "@SHOP.COM 2020",
            [255, 255, 255],
            1.0,
        );
    }
    let bytes = png_rgb(&image);
    let off = assess(&bytes, None, &Policy::default());
    assert!(off.watermark.is_none() && !off.reasons.contains(&Reason::Watermark));
    let on = assess(
        &bytes,
        None,
        &Policy {
            watermark: true,
            ..Policy::default()
        },
    );
    assert!(on.reasons.contains(&Reason::Watermark), "{on:?}");
}
