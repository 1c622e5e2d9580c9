//! Header parsing for every sniffed format: dimensions and orientation from a few hundred
//! bytes, checked against [`Limits`] before anything the size of the image is allocated.

use crate::exif;
use crate::{sniff, Format, ImageError};

/// What an input may cost. Checked on the header, before decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest encoded file accepted.
    pub max_bytes: usize,
    /// Largest width × height accepted (bounds the decoder's memory: about 1 byte per pixel
    /// for baseline JPEG and PNG, about 7 for progressive JPEG's coefficient buffers).
    pub max_pixels: u64,
    /// Largest width or height accepted.
    pub max_side: u32,
}

impl Default for Limits {
    /// 20 MiB, 40 megapixels, 12,000 px a side.
    fn default() -> Self {
        Limits {
            max_bytes: 20 * 1024 * 1024,
            max_pixels: 40_000_000,
            max_side: 12_000,
        }
    }
}

/// What the header says, before any pixel is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub format: Format,
    /// Stored width, before orientation.
    pub width: u32,
    /// Stored height, before orientation.
    pub height: u32,
    /// EXIF orientation 1..=8; 1 when absent or invalid.
    pub orientation: u8,
}

impl Header {
    /// Width and height as displayed: swapped for orientations 5..=8 (the 90° rotations).
    pub fn display_size(&self) -> (u32, u32) {
        if (5..=8).contains(&self.orientation) {
            (self.height, self.width)
        } else {
            (self.width, self.height)
        }
    }
}

/// Reads the header of any sniffed format and checks it against `limits`. Allocates nothing
/// proportional to the image.
pub fn read_header(bytes: &[u8], limits: &Limits) -> Result<Header, ImageError> {
    if bytes.is_empty() {
        return Err(ImageError::corrupt("the body is empty (0 bytes)"));
    }
    if bytes.len() > limits.max_bytes {
        return Err(ImageError::TooManyBytes {
            size: bytes.len(),
            max: limits.max_bytes,
        });
    }
    let header = match sniff(bytes) {
        Some(Format::Jpeg) => jpeg_header(bytes)?.header,
        Some(Format::Png) => png_header(bytes)?,
        Some(Format::Gif) => gif_header(bytes)?,
        Some(Format::Webp) => webp_header(bytes)?,
        None => {
            return Err(ImageError::Unsupported(crate::format::describe_unknown(
                bytes,
            )));
        }
    };
    check_limits(&header, limits)?;
    Ok(header)
}

pub(crate) fn check_limits(header: &Header, limits: &Limits) -> Result<(), ImageError> {
    let (width, height) = (header.width, header.height);
    if width == 0 || height == 0 {
        return Err(ImageError::corrupt(format!(
            "the {} header declares {width}x{height} pixels",
            header.format.name()
        )));
    }
    let too_large = |why: String| Err(ImageError::TooLarge { width, height, why });
    if width > limits.max_side || height > limits.max_side {
        return too_large(format!("a side is over {} px", limits.max_side));
    }
    let pixels = u64::from(width) * u64::from(height);
    if pixels > limits.max_pixels {
        return too_large(format!(
            "{pixels} pixels, over the limit of {}",
            limits.max_pixels
        ));
    }
    Ok(())
}

fn be16(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn be32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn le16(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn le32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// A JPEG header and where its first scan starts (the truncation check looks past it).
pub(crate) struct JpegHeader {
    pub header: Header,
    pub scan_start: usize,
}

/// Walks the markers from SOI to the first SOS.
pub(crate) fn jpeg_header(bytes: &[u8]) -> Result<JpegHeader, ImageError> {
    let truncated = || ImageError::corrupt("the JPEG ends inside its headers (truncated)");
    let mut at = 2;
    let mut size = None;
    let mut orientation = 1;
    let mut seen_exif = false;
    loop {
        // Tolerate junk and fill bytes between segments, as libjpeg does.
        while *bytes.get(at).ok_or_else(truncated)? != 0xFF {
            at += 1;
        }
        while *bytes.get(at).ok_or_else(truncated)? == 0xFF {
            at += 1;
        }
        let marker = bytes[at];
        at += 1;
        match marker {
            0x00 | 0x01 | 0xD0..=0xD8 => continue,
            0xD9 => return Err(ImageError::corrupt("the JPEG ends before any image data")),
            _ => {}
        }
        let length = usize::from(be16(bytes, at).ok_or_else(truncated)?);
        if length < 2 {
            return Err(ImageError::corrupt(format!(
                "JPEG segment 0xFF{marker:02X} has length {length}"
            )));
        }
        let payload = bytes.get(at + 2..at + length).ok_or_else(truncated)?;
        match marker {
            0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => {
                return Err(ImageError::Unsupported(format!(
                    "arithmetic-coded, lossless or hierarchical JPEG (SOF 0xFF{marker:02X})"
                )))
            }
            0xC0..=0xC2 => {
                let height = be16(payload, 1).ok_or_else(truncated)?;
                let width = be16(payload, 3).ok_or_else(truncated)?;
                size = Some((u32::from(width), u32::from(height)));
            }
            0xE1 if !seen_exif && payload.starts_with(b"Exif\0\0") => {
                seen_exif = true;
                orientation = exif::orientation_from_app1(payload);
            }
            0xDA => {
                let (width, height) = size.ok_or_else(|| {
                    ImageError::corrupt("the JPEG has image data but no frame header (SOF)")
                })?;
                return Ok(JpegHeader {
                    header: Header {
                        format: Format::Jpeg,
                        width,
                        height,
                        orientation,
                    },
                    scan_start: at + length,
                });
            }
            _ => {}
        }
        at += length;
    }
}

const PNG_COLOR_DEPTHS: [(u8, &[u8]); 5] = [
    (0, &[1, 2, 4, 8, 16]),
    (2, &[8, 16]),
    (3, &[1, 2, 4, 8]),
    (4, &[8, 16]),
    (6, &[8, 16]),
];

fn png_header(bytes: &[u8]) -> Result<Header, ImageError> {
    let truncated = || ImageError::corrupt("the PNG ends inside its headers (truncated)");
    if bytes.get(12..16) != Some(b"IHDR") || be32(bytes, 8) != Some(13) {
        return Err(match bytes.len() {
            0..16 => truncated(),
            _ => ImageError::corrupt("the PNG does not start with an IHDR chunk"),
        });
    }
    let width = be32(bytes, 16).ok_or_else(truncated)?;
    let height = be32(bytes, 20).ok_or_else(truncated)?;
    let depth = *bytes.get(24).ok_or_else(truncated)?;
    let color = *bytes.get(25).ok_or_else(truncated)?;
    let valid = PNG_COLOR_DEPTHS
        .iter()
        .any(|(c, depths)| *c == color && depths.contains(&depth));
    if !valid {
        return Err(ImageError::corrupt(format!(
            "PNG colour type {color} with bit depth {depth} does not exist"
        )));
    }
    if width > i32::MAX as u32 || height > i32::MAX as u32 {
        return Err(ImageError::corrupt(format!(
            "PNG size {width}x{height} is out of range"
        )));
    }
    // eXIf may carry an orientation; it must precede IDAT to count.
    let mut orientation = 1;
    let mut at = 8;
    while let (Some(length), Some(kind)) = (be32(bytes, at), bytes.get(at + 4..at + 8)) {
        let Some(data) = bytes.get(at + 8..(at + 8).saturating_add(length as usize)) else {
            break;
        };
        match kind {
            b"eXIf" => orientation = exif::orientation_from_tiff(data),
            b"IDAT" | b"IEND" => break,
            _ => {}
        }
        at += 12 + data.len();
    }
    Ok(Header {
        format: Format::Png,
        width,
        height,
        orientation,
    })
}

fn gif_header(bytes: &[u8]) -> Result<Header, ImageError> {
    let truncated = || ImageError::corrupt("the GIF ends inside its header (truncated)");
    Ok(Header {
        format: Format::Gif,
        width: u32::from(le16(bytes, 6).ok_or_else(truncated)?),
        height: u32::from(le16(bytes, 8).ok_or_else(truncated)?),
        orientation: 1,
    })
}

fn webp_header(bytes: &[u8]) -> Result<Header, ImageError> {
    let truncated = || ImageError::corrupt("the WebP ends inside its header (truncated)");
    let kind = bytes.get(12..16).ok_or_else(truncated)?;
    let data = bytes.get(20..).ok_or_else(truncated)?;
    let (width, height) = match kind {
        b"VP8 " => {
            if data.get(3..6) != Some(&[0x9D, 0x01, 0x2A]) {
                return Err(ImageError::corrupt("the WebP VP8 frame has no start code"));
            }
            let width = le16(data, 6).ok_or_else(truncated)? & 0x3FFF;
            let height = le16(data, 8).ok_or_else(truncated)? & 0x3FFF;
            (u32::from(width), u32::from(height))
        }
        b"VP8L" => {
            if data.first() != Some(&0x2F) {
                return Err(ImageError::corrupt("the WebP VP8L stream has no signature"));
            }
            let bits = le32(data, 1).ok_or_else(truncated)?;
            ((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
        }
        b"VP8X" => {
            let field = |at: usize| -> Option<u32> {
                let b = data.get(at..at + 3)?;
                Some(u32::from(b[0]) | u32::from(b[1]) << 8 | u32::from(b[2]) << 16)
            };
            (
                field(4).ok_or_else(truncated)? + 1,
                field(7).ok_or_else(truncated)? + 1,
            )
        }
        other => {
            return Err(ImageError::corrupt(format!(
                "unknown WebP chunk {:?}",
                String::from_utf8_lossy(other)
            )))
        }
    };
    Ok(Header {
        format: Format::Webp,
        width,
        height,
        orientation: 1,
    })
}
