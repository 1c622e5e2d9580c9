//! EXIF orientation (TIFF IFD0 tag 0x0112), read by hand with checked access.
//!
//! Only the one tag is read; anything malformed means "no orientation" (1), never an error:
//! a broken EXIF block should not reject an otherwise good photo.

const ORIENTATION_TAG: u16 = 0x0112;
const TYPE_SHORT: u16 = 3;

/// Orientation from a JPEG APP1 payload (starting with `Exif\0\0`), 1 when absent or invalid.
pub(crate) fn orientation_from_app1(payload: &[u8]) -> u8 {
    match payload.strip_prefix(b"Exif\0\0") {
        Some(tiff) => orientation_from_tiff(tiff),
        None => 1,
    }
}

/// Orientation from a bare TIFF structure (a PNG `eXIf` chunk, or APP1 after its prefix).
pub(crate) fn orientation_from_tiff(tiff: &[u8]) -> u8 {
    read_orientation(tiff)
        .filter(|o| (1..=8).contains(o))
        .unwrap_or(1)
}

fn read_orientation(tiff: &[u8]) -> Option<u8> {
    let big_endian = match tiff.get(..4)? {
        [b'I', b'I', 42, 0] => false,
        [b'M', b'M', 0, 42] => true,
        _ => return None,
    };
    let u16_at = |at: usize| -> Option<u16> {
        let b: [u8; 2] = tiff.get(at..at.checked_add(2)?)?.try_into().ok()?;
        Some(if big_endian {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        })
    };
    let u32_at = |at: usize| -> Option<u32> {
        let b: [u8; 4] = tiff.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(if big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    };
    let ifd = usize::try_from(u32_at(4)?).ok()?;
    let entries = usize::from(u16_at(ifd)?);
    for index in 0..entries {
        let entry = ifd.checked_add(2)?.checked_add(index.checked_mul(12)?)?;
        if u16_at(entry)? != ORIENTATION_TAG {
            continue;
        }
        // A SHORT with count 1 sits left-justified in the 4-byte value field.
        if u16_at(entry + 2)? != TYPE_SHORT || u32_at(entry + 4)? != 1 {
            return None;
        }
        return u8::try_from(u16_at(entry + 8)?).ok();
    }
    None
}

/// A minimal APP1 payload carrying only an orientation, for tests of both byte orders.
#[cfg(test)]
pub(crate) fn app1_with_orientation(orientation: u16, big_endian: bool) -> Vec<u8> {
    let mut tiff = Vec::new();
    let push16 = |v: &mut Vec<u8>, x: u16| {
        v.extend_from_slice(&if big_endian {
            x.to_be_bytes()
        } else {
            x.to_le_bytes()
        })
    };
    let push32 = |v: &mut Vec<u8>, x: u32| {
        v.extend_from_slice(&if big_endian {
            x.to_be_bytes()
        } else {
            x.to_le_bytes()
        })
    };
    tiff.extend_from_slice(if big_endian { b"MM" } else { b"II" });
    push16(&mut tiff, 42);
    push32(&mut tiff, 8);
    push16(&mut tiff, 2); // two entries: an unrelated tag first, then the orientation
    push16(&mut tiff, 0x010F); // Make, ASCII, pointing nowhere useful
    push16(&mut tiff, 2);
    push32(&mut tiff, 4);
    push32(&mut tiff, 0);
    push16(&mut tiff, ORIENTATION_TAG);
    push16(&mut tiff, TYPE_SHORT);
    push32(&mut tiff, 1);
    push16(&mut tiff, orientation);
    push16(&mut tiff, 0);
    push32(&mut tiff, 0); // no next IFD
    let mut payload = b"Exif\0\0".to_vec();
    payload.extend_from_slice(&tiff);
    payload
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_byte_orders() {
        for orientation in 1..=8 {
            assert_eq!(
                orientation_from_app1(&app1_with_orientation(orientation, false)),
                orientation as u8
            );
            assert_eq!(
                orientation_from_app1(&app1_with_orientation(orientation, true)),
                orientation as u8
            );
        }
    }

    #[test]
    fn invalid_or_truncated_blocks_mean_upright() {
        assert_eq!(orientation_from_app1(&app1_with_orientation(9, false)), 1);
        assert_eq!(orientation_from_app1(&app1_with_orientation(0, true)), 1);
        assert_eq!(orientation_from_app1(b"Exif\0\0"), 1);
        assert_eq!(orientation_from_app1(b"http://ns.adobe.com/xap/1.0/"), 1);
        let full = app1_with_orientation(6, false);
        for cut in 0..full.len() {
            let o = orientation_from_app1(&full[..cut]);
            assert!(
                o == 1 || (cut >= full.len() - 6 && o == 6),
                "cut {cut} gave {o}"
            );
        }
        // An IFD offset pointing far outside the block.
        let mut far = app1_with_orientation(6, false);
        far[10..14].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(orientation_from_app1(&far), 1);
    }
}
