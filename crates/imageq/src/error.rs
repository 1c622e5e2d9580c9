//! The one error type of the crate: why bytes could not be turned into pixels.

use crate::{Format, Reason};

/// A boxed decoder error, kept as the cause so the chain survives into logs.
pub type DecoderError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why an image could not be read. Every variant maps to one [`Reason`] via [`ImageError::reason`].
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Not an image format this crate reads (or not an image at all).
    #[error("unsupported format: {0}")]
    Unsupported(String),
    /// The bytes claim to be an image but break its format (truncated, bad header, zero size).
    #[error("corrupt image: {detail}")]
    Corrupt {
        detail: String,
        #[source]
        source: Option<DecoderError>,
    },
    /// The header declares more pixels than the limits allow; nothing was allocated for them.
    #[error("image too large: {width}x{height} ({why})")]
    TooLarge {
        width: u32,
        height: u32,
        why: String,
    },
    /// The encoded file itself is over the byte limit.
    #[error("image file too large: {size} bytes, the limit is {max}")]
    TooManyBytes { size: usize, max: usize },
}

impl ImageError {
    pub(crate) fn corrupt(detail: impl Into<String>) -> Self {
        ImageError::Corrupt {
            detail: detail.into(),
            source: None,
        }
    }

    pub(crate) fn decoder(format: Format, source: impl Into<DecoderError>) -> Self {
        ImageError::Corrupt {
            detail: format!("the {} decoder rejected it", format.name()),
            source: Some(source.into()),
        }
    }

    /// The verdict this error stands for.
    pub fn reason(&self) -> Reason {
        match self {
            ImageError::Unsupported(_) => Reason::UnsupportedFormat,
            ImageError::Corrupt { .. } => Reason::Corrupt,
            ImageError::TooLarge { .. } | ImageError::TooManyBytes { .. } => Reason::TooLarge,
        }
    }

    /// The message with its causes, for a human (`Assessment::detail`).
    pub fn detail(&self) -> String {
        let mut text = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(error) = cause {
            text.push_str(": ");
            text.push_str(&error.to_string());
            cause = error.source();
        }
        text
    }
}
