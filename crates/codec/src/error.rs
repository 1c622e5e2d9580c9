use thiserror::Error;

#[derive(Debug, Error)]
pub enum CodecError {
    #[error("record is {len} bytes, shorter than the 5-byte Confluent header")]
    TooShort { len: usize },
    #[error("unknown magic byte {0:#04x} (expected 0x00: not Confluent-framed Avro)")]
    BadMagic(u8),
    #[error("schema id {0} is not known to the registry")]
    UnknownSchemaId(u32),
    #[error("schema registry request failed: {0}")]
    Registry(String),
    #[error("schema registry unreachable: {0}")]
    RegistryUnreachable(#[source] reqwest::Error),
    #[error("avro: {0}")]
    Avro(#[from] Box<apache_avro::Error>),
    #[error("value does not match schema {schema}: {reason}")]
    Mismatch { schema: String, reason: String },
}

impl CodecError {
    /// True when retrying later may succeed (the registry was down), false when the bytes or
    /// the value themselves are wrong.
    pub fn is_transient(&self) -> bool {
        matches!(self, CodecError::RegistryUnreachable(_))
    }
}

impl From<apache_avro::Error> for CodecError {
    fn from(e: apache_avro::Error) -> Self {
        CodecError::Avro(Box::new(e))
    }
}
