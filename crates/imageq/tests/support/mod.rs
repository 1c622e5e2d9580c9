//! Images made in code for the tests: a textured "photo", encoders, a blur and a tiny font.
#![allow(dead_code)]

/// An RGB image, row-major.
pub struct Rgb {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u8>,
}

/// Deterministic pseudo-random numbers (no dev-dependency needed for this).
pub struct Lcg(pub u64);

impl Lcg {
    pub fn next(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }
}

/// Something photo-like: soft gradients, a few hard-edged discs and fine grain, so it is
/// sharp by the Laplacian measure without looking like text.
pub fn photo(width: u32, height: u32, seed: u64) -> Rgb {
    let mut rng = Lcg(seed);
    let discs: Vec<(f32, f32, f32, [u8; 3])> = (0..12)
        .map(|_| {
            let x = (rng.next() % width) as f32;
            let y = (rng.next() % height) as f32;
            let r = (rng.next() % (width / 6).max(2)) as f32 + 4.0;
            (
                x,
                y,
                r,
                [rng.next() as u8, rng.next() as u8, rng.next() as u8],
            )
        })
        .collect();
    let mut pixels = Vec::with_capacity((width * height * 3) as usize);
    for y in 0..height {
        for x in 0..width {
            let fx = x as f32 / width as f32;
            let fy = y as f32 / height as f32;
            let mut c = [
                60.0 + 120.0 * fx,
                80.0 + 90.0 * fy,
                100.0 + 60.0 * (fx * 7.0).sin() * (fy * 5.0).cos(),
            ];
            for (cx, cy, r, colour) in &discs {
                if (x as f32 - cx).powi(2) + (y as f32 - cy).powi(2) < r * r {
                    c = colour.map(f32::from);
                }
            }
            let grain = (rng.next() % 25) as f32 - 12.0;
            pixels.extend(c.map(|v| (v + grain).clamp(0.0, 255.0) as u8));
        }
    }
    Rgb {
        width,
        height,
        pixels,
    }
}

/// A separable box blur run three times (close to a Gaussian of sigma ≈ radius).
pub fn blurred(image: &Rgb, radius: usize) -> Rgb {
    let (w, h) = (image.width as usize, image.height as usize);
    let mut data: Vec<f32> = image.pixels.iter().map(|&v| f32::from(v)).collect();
    for _ in 0..3 {
        for horizontal in [true, false] {
            let src = data.clone();
            for y in 0..h {
                for x in 0..w {
                    for c in 0..3 {
                        let mut sum = 0.0;
                        for k in -(radius as isize)..=radius as isize {
                            let (sx, sy) = if horizontal {
                                ((x as isize + k).clamp(0, w as isize - 1) as usize, y)
                            } else {
                                (x, (y as isize + k).clamp(0, h as isize - 1) as usize)
                            };
                            sum += src[(sy * w + sx) * 3 + c];
                        }
                        data[(y * w + x) * 3 + c] = sum / (2 * radius + 1) as f32;
                    }
                }
            }
        }
    }
    Rgb {
        width: image.width,
        height: image.height,
        pixels: data.iter().map(|&v| v.round() as u8).collect(),
    }
}

/// A baseline JPEG; with `orientation`, an EXIF APP1 carrying it (little-endian TIFF).
pub fn jpeg(image: &Rgb, quality: u8, orientation: Option<u16>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = jpeg_encoder::Encoder::new(&mut out, quality);
    if let Some(o) = orientation {
        encoder
            .add_app_segment(1, exif_orientation(o))
            .expect("app1");
    }
    encoder
        .encode(
            &image.pixels,
            image.width as u16,
            image.height as u16,
            jpeg_encoder::ColorType::Rgb,
        )
        .expect("encode jpeg");
    out
}

pub fn progressive_jpeg(image: &Rgb, quality: u8) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = jpeg_encoder::Encoder::new(&mut out, quality);
    encoder.set_progressive(true);
    encoder
        .encode(
            &image.pixels,
            image.width as u16,
            image.height as u16,
            jpeg_encoder::ColorType::Rgb,
        )
        .expect("encode jpeg");
    out
}

fn exif_orientation(orientation: u16) -> Vec<u8> {
    let mut payload = b"Exif\0\0II*\0".to_vec();
    payload.extend_from_slice(&8u32.to_le_bytes());
    payload.extend_from_slice(&1u16.to_le_bytes());
    payload.extend_from_slice(&0x0112u16.to_le_bytes());
    payload.extend_from_slice(&3u16.to_le_bytes());
    payload.extend_from_slice(&1u32.to_le_bytes());
    payload.extend_from_slice(&orientation.to_le_bytes());
    payload.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    payload
}

pub fn png_rgb(image: &Rgb) -> Vec<u8> {
    png_encode(
        image.width,
        image.height,
        png::ColorType::Rgb,
        &image.pixels,
    )
}

pub fn png_encode(width: u32, height: u32, color: png::ColorType, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(color);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().expect("png header");
    writer.write_image_data(data).expect("png data");
    writer.finish().expect("png finish");
    out
}

/// One PNG chunk with its CRC.
pub fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut chunk = (data.len() as u32).to_be_bytes().to_vec();
    chunk.extend_from_slice(kind);
    chunk.extend_from_slice(data);
    let mut crc = crc32(kind);
    crc = crc32_update(crc, data);
    chunk.extend_from_slice(&(!crc).to_be_bytes());
    chunk
}

fn crc32(bytes: &[u8]) -> u32 {
    crc32_update(0xFFFF_FFFF, bytes)
}

fn crc32_update(mut crc: u32, bytes: &[u8]) -> u32 {
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    crc
}

/// A PNG IHDR chunk (8-bit, the given colour type, not interlaced).
pub fn ihdr(width: u32, height: u32, color: u8) -> Vec<u8> {
    let mut data = width.to_be_bytes().to_vec();
    data.extend_from_slice(&height.to_be_bytes());
    data.extend_from_slice(&[8, color, 0, 0, 0]);
    png_chunk(b"IHDR", &data)
}

/// A 5x7 bitmap font for a few capitals, digits and '©' (as 'C' in a box would be too
/// fancy: '@' stands for it), enough to write shop names.
fn glyph(c: char) -> [u8; 7] {
    match c {
        'A' => [0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'C' => [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E],
        'E' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F],
        'H' => [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F],
        'M' => [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11],
        'O' => [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'P' => [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10],
        'S' => [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E],
        'T' => [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        'W' => [0x11, 0x11, 0x11, 0x15, 0x15, 0x1B, 0x11],
        '.' => [0, 0, 0, 0, 0, 0x0C, 0x0C],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '0' => [0x0E, 0x13, 0x15, 0x15, 0x19, 0x11, 0x0E],
        '@' => [0x0E, 0x11, 0x17, 0x15, 0x17, 0x10, 0x0E],
        _ => [0; 7],
    }
}

/// Draws `text` with strokes `scale` px thick at (x, y), in `colour`, blended with `alpha`
/// (1.0 opaque). Characters are 6 cells wide.
pub fn draw_text(
    image: &mut Rgb,
    x: u32,
    y: u32,
    scale: u32,
    text: &str,
    colour: [u8; 3],
    alpha: f32,
) {
    let (width, height) = (image.width, image.height);
    draw(
        &mut image.pixels,
        width,
        height,
        3,
        x,
        y,
        scale,
        text,
        &colour,
        alpha,
    );
}

/// `draw_text` on a grayscale image.
pub fn draw_text_gray(
    image: &mut imageq::Gray,
    x: u32,
    y: u32,
    scale: u32,
    text: &str,
    level: u8,
    alpha: f32,
) {
    let (width, height) = (image.width, image.height);
    draw(
        &mut image.pixels,
        width,
        height,
        1,
        x,
        y,
        scale,
        text,
        &[level],
        alpha,
    );
}

#[allow(clippy::too_many_arguments)]
fn draw(
    pixels: &mut [u8],
    width: u32,
    height: u32,
    channels: usize,
    x: u32,
    y: u32,
    scale: u32,
    text: &str,
    colour: &[u8],
    alpha: f32,
) {
    for (i, c) in text.chars().enumerate() {
        let rows = glyph(c);
        for (gy, bits) in rows.iter().enumerate() {
            for gx in 0..5 {
                if bits & (0x10 >> gx) == 0 {
                    continue;
                }
                for dy in 0..scale {
                    for dx in 0..scale {
                        let px = x + (i as u32 * 6 + gx) * scale + dx;
                        let py = y + gy as u32 * scale + dy;
                        if px >= width || py >= height {
                            continue;
                        }
                        let at = (py * width + px) as usize * channels;
                        for ch in 0..channels {
                            let old = f32::from(pixels[at + ch]);
                            pixels[at + ch] =
                                (old * (1.0 - alpha) + f32::from(colour[ch]) * alpha).round() as u8;
                        }
                    }
                }
            }
        }
    }
}

/// Width in pixels `draw_text` uses for `text` at `scale`.
pub fn text_width(text: &str, scale: u32) -> u32 {
    text.chars().count() as u32 * 6 * scale
}
