//! Format sniffing from magic bytes and the HTTP `Content-Type` check.

/// An image format recognised from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Jpeg,
    Png,
    Gif,
    Webp,
}

impl Format {
    /// The IANA media type, as a `Content-Type` would say it.
    pub fn mime(self) -> &'static str {
        match self {
            Format::Jpeg => "image/jpeg",
            Format::Png => "image/png",
            Format::Gif => "image/gif",
            Format::Webp => "image/webp",
        }
    }

    /// A short name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Format::Jpeg => "JPEG",
            Format::Png => "PNG",
            Format::Gif => "GIF",
            Format::Webp => "WebP",
        }
    }
}

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// The format the bytes start like, or `None`. Looks at the first 12 bytes only.
pub fn sniff(bytes: &[u8]) -> Option<Format> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(Format::Jpeg)
    } else if bytes.starts_with(PNG_SIGNATURE) {
        Some(Format::Png)
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some(Format::Gif)
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some(Format::Webp)
    } else {
        None
    }
}

/// What a declared `Content-Type` says, once parameters and case are set aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Declared {
    /// Says nothing about the format (`application/octet-stream`, empty): trust the sniff.
    Generic,
    /// An `image/*` type this crate knows.
    Image(Format),
    /// An `image/*` type this crate does not read (e.g. `image/tiff`).
    OtherImage(String),
    /// Not an image type at all (e.g. `text/html`).
    NotImage(String),
}

pub(crate) fn parse_content_type(value: &str) -> Declared {
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        // S3 and many CDNs serve uploads with a generic type; it claims no format.
        "" | "application/octet-stream" | "binary/octet-stream" => Declared::Generic,
        "image/jpeg" | "image/jpg" | "image/pjpeg" => Declared::Image(Format::Jpeg),
        "image/png" | "image/x-png" | "image/apng" => Declared::Image(Format::Png),
        "image/gif" => Declared::Image(Format::Gif),
        "image/webp" => Declared::Image(Format::Webp),
        other if other.starts_with("image/") => Declared::OtherImage(other.to_owned()),
        other => Declared::NotImage(other.to_owned()),
    }
}

/// A few words on what unrecognised bytes look like, for the verdict's detail.
pub(crate) fn describe_unknown(bytes: &[u8]) -> String {
    let head = &bytes[..bytes.len().min(64)];
    let text = String::from_utf8_lossy(head)
        .trim_start()
        .to_ascii_lowercase();
    if text.starts_with("<!doctype html") || text.starts_with("<html") {
        return "the bytes are an HTML page".to_owned();
    }
    if text.starts_with("<?xml") || text.starts_with("<svg") {
        return "the bytes are XML/SVG, which is not accepted".to_owned();
    }
    if text.starts_with('{') || text.starts_with('[') {
        return "the bytes look like JSON".to_owned();
    }
    if bytes.starts_with(b"II*\0") || bytes.starts_with(b"MM\0*") {
        return "the bytes are a TIFF image, which is not accepted".to_owned();
    }
    if bytes.len() >= 12 && &bytes[4..8] == b"ftyp" {
        return "the bytes are an ISO media file (HEIC/AVIF/MP4), which is not accepted".to_owned();
    }
    if bytes.starts_with(b"BM") {
        return "the bytes are a BMP image, which is not accepted".to_owned();
    }
    let hex: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("no known image signature (first bytes {})", hex.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_each_format_and_nothing_else() {
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0]), Some(Format::Jpeg));
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n...."), Some(Format::Png));
        assert_eq!(sniff(b"GIF89a.."), Some(Format::Gif));
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 "), Some(Format::Webp));
        assert_eq!(sniff(b"RIFF\0\0\0\0WAVEfmt "), None);
        assert_eq!(sniff(b""), None);
        assert_eq!(sniff(&[0xFF, 0xD8]), None);
        assert_eq!(sniff(b"<!DOCTYPE html>"), None);
    }

    #[test]
    fn content_types_are_read_without_parameters_or_case() {
        assert_eq!(
            parse_content_type("image/JPEG; charset=binary"),
            Declared::Image(Format::Jpeg)
        );
        assert_eq!(
            parse_content_type("image/jpg"),
            Declared::Image(Format::Jpeg)
        );
        assert_eq!(
            parse_content_type(" application/octet-stream "),
            Declared::Generic
        );
        assert_eq!(
            parse_content_type("text/html; charset=utf-8"),
            Declared::NotImage("text/html".into())
        );
        assert_eq!(
            parse_content_type("image/tiff"),
            Declared::OtherImage("image/tiff".into())
        );
    }

    #[test]
    fn unknown_bytes_are_described() {
        assert!(describe_unknown(b"  <!DOCTYPE html><html>").contains("HTML"));
        assert!(describe_unknown(&[1, 2, 3]).contains("01 02 03"));
    }
}
