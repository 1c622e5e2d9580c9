//! Bounded decoding to 8-bit grayscale, matching what OpenCV's `IMREAD_GRAYSCALE` produces.
//!
//! - JPEG: zune-jpeg with Luma output, which decodes only the Y component of YCbCr files (as
//!   libjpeg does for grayscale output). Strict mode: a damaged entropy stream is an error,
//!   not a grey fill. A file whose scan data has no EOI after it is reported truncated
//!   before decoding starts, and one with fewer scan bytes than its frame needs (a bit per
//!   8x8 block) as corrupt. Not caught: a file cut short and then re-terminated with a forged
//!   EOI; zune-jpeg, like libjpeg (and so OpenCV), decodes the missing rest as flat blocks.
//! - PNG: the `png` crate, row by row (no full-colour frame is ever held), converted the way
//!   libpng's `png_set_rgb_to_gray(0.299, 0.587)` does inside OpenCV: truncating fixed point
//!   (9797, 19234, 3737) >> 15, through libpng's 8-bit gamma tables when the file carries
//!   `gAMA` or `sRGB`; alpha is dropped, not composited.

use std::io::Cursor;

use zune_jpeg::zune_core::colorspace::ColorSpace;
use zune_jpeg::zune_core::options::DecoderOptions;

use crate::header::{check_limits, jpeg_header};
use crate::{read_header, Format, Gray, Header, ImageError, Limits};

/// Decodes to grayscale after checking the header against `limits`, so memory stays within
/// about `max_pixels` bytes plus the decoder's working buffers. The pixels are in stored
/// orientation (the header says how to display them).
pub fn decode_gray(bytes: &[u8], limits: &Limits) -> Result<(Header, Gray), ImageError> {
    let header = read_header(bytes, limits)?;
    let gray = match header.format {
        Format::Jpeg => decode_jpeg(bytes, &header, limits)?,
        Format::Png => decode_png(bytes, &header)?,
        Format::Gif | Format::Webp => {
            return Err(ImageError::Unsupported(format!(
                "{} is recognised ({}x{}) but not decoded; send JPEG or PNG",
                header.format.name(),
                header.width,
                header.height
            )))
        }
    };
    if gray.width != header.width || gray.height != header.height {
        return Err(ImageError::corrupt(format!(
            "decoded {}x{} pixels but the header says {}x{}",
            gray.width, gray.height, header.width, header.height
        )));
    }
    Ok((header, gray))
}

fn decode_jpeg(bytes: &[u8], header: &Header, limits: &Limits) -> Result<Gray, ImageError> {
    let scan_start = jpeg_header(bytes)?.scan_start;
    // Entropy-coded data cannot contain FF D9 (an FF there is always stuffed), so a file
    // without EOI after its first scan was cut short.
    let tail = bytes.get(scan_start..).unwrap_or_default();
    let Some(end) = tail.windows(2).rposition(|pair| pair == [0xFF, 0xD9]) else {
        return Err(ImageError::corrupt(
            "the JPEG is truncated: its image data has no end marker",
        ));
    };
    // Every 8x8 luma block costs at least one bit (its DC code), whatever the tables or
    // progression; fewer bytes than that means a small file claiming a big frame, which the
    // decoder would otherwise fill with made-up pixels at full cost.
    let blocks = u64::from(header.width.div_ceil(8)) * u64::from(header.height.div_ceil(8));
    if (end as u64) * 8 < blocks {
        return Err(ImageError::corrupt(format!(
            "the JPEG holds {end} bytes of image data, too few for {}x{} pixels",
            header.width, header.height
        )));
    }
    let side = limits.max_side as usize;
    let options = DecoderOptions::default()
        .set_strict_mode(true)
        .set_max_width(side)
        .set_max_height(side)
        .jpeg_set_out_colorspace(ColorSpace::Luma);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(Cursor::new(bytes), options);
    decoder
        .decode_headers()
        .map_err(|e| ImageError::decoder(Format::Jpeg, e))?;
    let four_components = matches!(
        decoder.input_colorspace(),
        Some(ColorSpace::CMYK | ColorSpace::YCCK)
    );
    let pixels = if four_components {
        // No luma to take: decode colour and weigh it as OpenCV's cvtColor does.
        decoder.set_options(options.jpeg_set_out_colorspace(ColorSpace::RGB));
        let rgb = decoder
            .decode()
            .map_err(|e| ImageError::decoder(Format::Jpeg, e))?;
        rgb.chunks_exact(3)
            .map(|p| {
                let (r, g, b) = (u32::from(p[0]), u32::from(p[1]), u32::from(p[2]));
                ((r * 4899 + g * 9617 + b * 1868 + 8192) >> 14) as u8
            })
            .collect()
    } else {
        decoder
            .decode()
            .map_err(|e| ImageError::decoder(Format::Jpeg, e))?
    };
    let expected = header.width as usize * header.height as usize;
    if pixels.len() != expected {
        return Err(ImageError::corrupt(format!(
            "the JPEG decoder returned {} samples for {}x{} pixels",
            pixels.len(),
            header.width,
            header.height
        )));
    }
    Ok(Gray {
        width: header.width,
        height: header.height,
        pixels,
    })
}

/// libpng's `PNG_GAMMA_sRGB_INVERSE`, in its 1e-5 fixed point.
const SRGB_GAMMA: u32 = 45455;
/// What the png crate may allocate for chunks and rows; the image itself is ours.
const PNG_DECODER_BUDGET: usize = 32 * 1024 * 1024;

fn decode_png(bytes: &[u8], header: &Header) -> Result<Gray, ImageError> {
    let error = |e: png::DecodingError| match e {
        png::DecodingError::LimitsExceeded => ImageError::TooLarge {
            width: header.width,
            height: header.height,
            why: "the PNG decoder's memory budget was exceeded".to_owned(),
        },
        e => ImageError::decoder(Format::Png, e),
    };
    let mut decoder = png::Decoder::new_with_limits(
        Cursor::new(bytes),
        png::Limits {
            bytes: PNG_DECODER_BUDGET,
        },
    );
    decoder.set_transformations(png::Transformations::EXPAND);
    decoder.set_ignore_text_chunk(true);
    decoder.set_ignore_iccp_chunk(true);
    let mut reader = decoder.read_info().map_err(error)?;
    let info = reader.info();
    check_limits(
        &Header {
            width: info.width,
            height: info.height,
            ..*header
        },
        &Limits {
            max_bytes: usize::MAX,
            max_pixels: u64::MAX,
            max_side: u32::MAX,
        },
    )?;
    let gamma = if info.srgb.is_some() {
        Some(SRGB_GAMMA)
    } else {
        info.source_gamma
            .map(|g| g.into_scaled())
            .filter(|&g| g > 0)
    };
    let interlaced = info.interlaced;
    let (color, depth) = reader.output_color_type();
    let converter = RowConverter::new(color, depth, gamma);
    let (width, height) = (header.width as usize, header.height as usize);
    let mut pixels = vec![0u8; width * height];
    let mut passes = Adam7::new(width, height, interlaced);
    let mut gray_row = vec![0u8; width];
    while let Some((x0, dx, y)) = passes.next_row() {
        let row = reader
            .next_row()
            .map_err(error)?
            .ok_or_else(|| ImageError::corrupt("the PNG image data ends early"))?;
        let samples = width.saturating_sub(x0).div_ceil(dx);
        converter.convert(row.data(), &mut gray_row[..samples]);
        let out = &mut pixels[y * width..(y + 1) * width];
        for (i, &value) in gray_row[..samples].iter().enumerate() {
            out[x0 + i * dx] = value;
        }
    }
    Ok(Gray {
        width: header.width,
        height: header.height,
        pixels,
    })
}

/// The rows of a PNG in decoding order: `(first x, x step, y)`; Adam7's seven passes when
/// interlaced, skipping empty passes as the format does.
struct Adam7 {
    width: usize,
    height: usize,
    interlaced: bool,
    pass: usize,
    line: usize,
}

/// (x0, y0, dx, dy) of each Adam7 pass.
const ADAM7: [(usize, usize, usize, usize); 7] = [
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
];

impl Adam7 {
    fn new(width: usize, height: usize, interlaced: bool) -> Self {
        Adam7 {
            width,
            height,
            interlaced,
            pass: 0,
            line: 0,
        }
    }

    fn next_row(&mut self) -> Option<(usize, usize, usize)> {
        if !self.interlaced {
            let y = self.line;
            self.line += 1;
            return (y < self.height).then_some((0, 1, y));
        }
        while let Some(&(x0, y0, dx, dy)) = ADAM7.get(self.pass) {
            let y = y0 + self.line * dy;
            if x0 < self.width && y < self.height {
                self.line += 1;
                return Some((x0, dx, y));
            }
            self.pass += 1;
            self.line = 0;
        }
        None
    }
}

/// Turns one decoded PNG row (after `EXPAND`) into gray samples.
struct RowConverter {
    channels: usize,
    sixteen_bit: bool,
    /// libpng's gamma_to_1 and gamma_from_1 tables, when the file declares a gamma.
    gamma: Option<([u16; 256], [u8; 256])>,
}

impl RowConverter {
    fn new(color: png::ColorType, depth: png::BitDepth, file_gamma: Option<u32>) -> Self {
        let channels = match color {
            png::ColorType::Grayscale | png::ColorType::Indexed => 1,
            png::ColorType::GrayscaleAlpha => 2,
            png::ColorType::Rgb => 3,
            png::ColorType::Rgba => 4,
        };
        let gamma = file_gamma.map(|g| {
            let to_linear = gamma_table(png_reciprocal(g));
            let from_linear = gamma_table(g);
            (to_linear.map(u16::from), from_linear)
        });
        RowConverter {
            channels,
            sixteen_bit: depth == png::BitDepth::Sixteen,
            gamma,
        }
    }

    fn convert(&self, row: &[u8], out: &mut [u8]) {
        let bytes = if self.sixteen_bit { 2 } else { 1 };
        let stride = self.channels * bytes;
        for (o, px) in out.iter_mut().zip(row.chunks_exact(stride)) {
            *o = if self.channels < 3 {
                px[0] // gray, or the high byte of 16-bit gray (libpng's strip_16)
            } else if self.sixteen_bit {
                let s = |i: usize| u32::from(u16::from_be_bytes([px[2 * i], px[2 * i + 1]]));
                let (r, g, b) = (s(0), s(1), s(2));
                let gray = if r == g && g == b {
                    r
                } else {
                    (9797 * r + 19234 * g + 3737 * b + 16384) >> 15
                };
                (gray >> 8) as u8
            } else {
                let (r, g, b) = (px[0], px[1], px[2]);
                if r == g && g == b {
                    r
                } else if let Some((to_linear, from_linear)) = &self.gamma {
                    let l = |v: u8| u32::from(to_linear[usize::from(v)]);
                    let linear = (9797 * l(r) + 19234 * l(g) + 3737 * l(b) + 16384) >> 15;
                    from_linear[linear.min(255) as usize]
                } else {
                    ((9797 * u32::from(r) + 19234 * u32::from(g) + 3737 * u32::from(b)) >> 15) as u8
                }
            };
        }
    }
}

/// libpng's `png_reciprocal`: 1/x in its 1e-5 fixed point.
fn png_reciprocal(fixed: u32) -> u32 {
    (1e10 / f64::from(fixed) + 0.5).floor() as u32
}

/// libpng's `png_build_8bit_table` (`png_gamma_8bit_correct` for each value).
fn gamma_table(fixed: u32) -> [u8; 256] {
    let exponent = f64::from(fixed) * 1e-5;
    std::array::from_fn(|i| match i {
        0 | 255 => i as u8,
        _ => (255.0 * (i as f64 / 255.0).powf(exponent) + 0.5).floor() as u8,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adam7_visits_every_pixel_once() {
        for (w, h) in [(1, 1), (3, 2), (8, 8), (13, 7), (1, 9)] {
            let mut seen = vec![0u8; w * h];
            let mut passes = Adam7::new(w, h, true);
            while let Some((x0, dx, y)) = passes.next_row() {
                for x in (x0..w).step_by(dx) {
                    seen[y * w + x] += 1;
                }
            }
            assert!(seen.iter().all(|&n| n == 1), "{w}x{h}: {seen:?}");
        }
    }

    #[test]
    fn gamma_tables_are_libpngs() {
        assert_eq!(png_reciprocal(45455), 219998);
        let to_linear = gamma_table(png_reciprocal(45455));
        let from_linear = gamma_table(45455);
        assert_eq!((to_linear[0], to_linear[128], to_linear[255]), (0, 56, 255));
        assert_eq!(from_linear[56], 128);
    }
}
