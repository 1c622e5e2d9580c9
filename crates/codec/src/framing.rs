use crate::CodecError;

pub const MAGIC_BYTE: u8 = 0;

/// Prefixes an Avro body with the Confluent header for `schema_id`.
pub fn frame(schema_id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(MAGIC_BYTE);
    out.extend_from_slice(&schema_id.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Splits a Confluent-framed record into its schema id and Avro body.
pub fn unframe(bytes: &[u8]) -> Result<(u32, &[u8]), CodecError> {
    let (header, body) = match bytes.split_first_chunk::<5>() {
        Some(split) => split,
        None => return Err(CodecError::TooShort { len: bytes.len() }),
    };
    if header[0] != MAGIC_BYTE {
        return Err(CodecError::BadMagic(header[0]));
    }
    let id = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
    Ok((id, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn frame_then_unframe_round_trips(id in any::<u32>(), body in proptest::collection::vec(any::<u8>(), 0..64)) {
            let framed = frame(id, &body);
            let (got_id, got_body) = unframe(&framed).unwrap();
            prop_assert_eq!(got_id, id);
            prop_assert_eq!(got_body, &body[..]);
        }

        #[test]
        fn unframe_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..16)) {
            let _ = unframe(&bytes);
        }
    }

    #[test]
    fn short_and_unframed_records_are_typed_errors() {
        assert!(matches!(
            unframe(&[0, 0, 1]),
            Err(CodecError::TooShort { len: 3 })
        ));
        assert!(matches!(
            unframe(b"{\"json\":1}"),
            Err(CodecError::BadMagic(b'{'))
        ));
    }
}
