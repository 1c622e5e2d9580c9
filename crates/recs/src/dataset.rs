//! Interaction logs in and out: a ratings CSV reader (MovieLens-100K as converted by
//! `scripts/fetch-movielens.sh`) and the binary triples file the Python reference
//! (`tests/python/recs_reference.py`) reads.
//!
//! Parsing never panics on input: a malformed line is an error naming the line.
//!
//! Triples file, little-endian: the 8 bytes `RECSTRP1`, then `rows`, `cols`, `nnz` as u64,
//! then `nnz` u32 row indices, `nnz` u32 column indices and `nnz` f32 values.

use std::collections::BTreeMap;
use std::io::{self, BufRead, Read, Write};

use thiserror::Error;

use crate::matrix::{CsrMatrix, MatrixError};

/// One user–item event at a time, e.g. a purchase or a rating.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interaction {
    pub user: u32,
    pub item: u32,
    pub weight: f32,
    /// Seconds since the epoch (only the order matters).
    pub timestamp: i64,
}

#[derive(Debug, Error)]
pub enum DatasetError {
    #[error("reading the input failed")]
    Io(#[from] io::Error),
    #[error("line {line}: {reason}")]
    Malformed { line: usize, reason: String },
    #[error("not a triples file (bad magic)")]
    BadMagic,
    #[error(transparent)]
    Matrix(#[from] MatrixError),
}

/// A ratings log with ids packed densely (ascending raw id order).
#[derive(Debug, Clone)]
pub struct RatingsLog {
    pub interactions: Vec<Interaction>,
    /// Packed user index → raw user id.
    pub user_ids: Vec<u64>,
    /// Packed item index → raw item id.
    pub item_ids: Vec<u64>,
}

/// Reads `user_id,item_id,rating,timestamp` lines (an optional header line is skipped;
/// extra columns are ignored). The rating becomes the interaction weight.
pub fn read_ratings_csv(input: impl BufRead) -> Result<RatingsLog, DatasetError> {
    let mut raw = Vec::new();
    for (index, line) in input.lines().enumerate() {
        let line = line?;
        let number = index + 1;
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        let fields: Vec<&str> = trimmed.split(',').map(str::trim).collect();
        if index == 0 && fields.first().is_some_and(|f| f.parse::<u64>().is_err()) {
            continue; // header
        }
        let malformed = |reason: &str| DatasetError::Malformed {
            line: number,
            reason: reason.to_owned(),
        };
        if fields.len() < 4 {
            return Err(malformed("expected user_id,item_id,rating,timestamp"));
        }
        let user: u64 = fields[0].parse().map_err(|_| malformed("bad user_id"))?;
        let item: u64 = fields[1].parse().map_err(|_| malformed("bad item_id"))?;
        let rating: f32 = fields[2].parse().map_err(|_| malformed("bad rating"))?;
        if !rating.is_finite() {
            return Err(malformed("rating is not finite"));
        }
        let timestamp: i64 = fields[3].parse().map_err(|_| malformed("bad timestamp"))?;
        raw.push((user, item, rating, timestamp));
    }
    let pack = |ids: &mut dyn Iterator<Item = u64>| -> BTreeMap<u64, u32> {
        let mut map: BTreeMap<u64, u32> = ids.map(|id| (id, 0)).collect();
        for (n, slot) in map.values_mut().enumerate() {
            *slot = n as u32;
        }
        map
    };
    let users = pack(&mut raw.iter().map(|r| r.0));
    let items = pack(&mut raw.iter().map(|r| r.1));
    let interactions = raw
        .iter()
        .map(|&(user, item, weight, timestamp)| Interaction {
            user: users[&user],
            item: items[&item],
            weight,
            timestamp,
        })
        .collect();
    Ok(RatingsLog {
        interactions,
        user_ids: users.into_keys().collect(),
        item_ids: items.into_keys().collect(),
    })
}

const MAGIC: &[u8; 8] = b"RECSTRP1";

/// Writes a matrix as a triples file.
pub fn write_triples(matrix: &CsrMatrix, mut out: impl Write) -> io::Result<()> {
    out.write_all(MAGIC)?;
    for n in [matrix.rows(), matrix.cols(), matrix.nnz()] {
        out.write_all(&(n as u64).to_le_bytes())?;
    }
    let mut buffer = Vec::with_capacity(matrix.nnz() * 4);
    for r in 0..matrix.rows() {
        for _ in 0..matrix.row_len(r) {
            buffer.extend_from_slice(&(r as u32).to_le_bytes());
        }
    }
    out.write_all(&buffer)?;
    buffer.clear();
    matrix
        .indices()
        .iter()
        .for_each(|c| buffer.extend_from_slice(&c.to_le_bytes()));
    out.write_all(&buffer)?;
    buffer.clear();
    matrix
        .values()
        .iter()
        .for_each(|v| buffer.extend_from_slice(&v.to_le_bytes()));
    out.write_all(&buffer)?;
    out.flush()
}

/// Reads a triples file back into a matrix.
pub fn read_triples(mut input: impl Read) -> Result<CsrMatrix, DatasetError> {
    let mut magic = [0u8; 8];
    input.read_exact(&mut magic)?;
    if &magic != MAGIC {
        return Err(DatasetError::BadMagic);
    }
    let mut header = [0u64; 3];
    for slot in &mut header {
        let mut bytes = [0u8; 8];
        input.read_exact(&mut bytes)?;
        *slot = u64::from_le_bytes(bytes);
    }
    let [rows, cols, nnz] = header.map(|n| n as usize);
    let mut read_words = |n: usize| -> io::Result<Vec<[u8; 4]>> {
        let mut bytes = Vec::new();
        input.by_ref().take(n as u64 * 4).read_to_end(&mut bytes)?;
        if bytes.len() != n * 4 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "truncated triples file",
            ));
        }
        Ok(bytes
            .chunks_exact(4)
            .map(|w| [w[0], w[1], w[2], w[3]])
            .collect())
    };
    let row_words = read_words(nnz)?;
    let col_words = read_words(nnz)?;
    let value_words = read_words(nnz)?;
    let triples = row_words
        .into_iter()
        .zip(col_words)
        .zip(value_words)
        .map(|((r, c), v)| {
            (
                u32::from_le_bytes(r),
                u32::from_le_bytes(c),
                f32::from_le_bytes(v),
            )
        });
    Ok(CsrMatrix::from_triples(rows, cols, triples)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ratings_with_header_and_packs_ids() {
        let csv = "user_id,item_id,rating,timestamp\n7,100,4,50\n3,100,5,10\n7,42,1,20\n";
        let log = read_ratings_csv(csv.as_bytes()).unwrap();
        assert_eq!(log.user_ids, vec![3, 7]);
        assert_eq!(log.item_ids, vec![42, 100]);
        assert_eq!(
            log.interactions[0],
            Interaction {
                user: 1,
                item: 1,
                weight: 4.0,
                timestamp: 50
            }
        );
    }

    #[test]
    fn malformed_lines_are_errors_with_line_numbers() {
        let err = read_ratings_csv("1,2,3,4\n1,x,3,4\n".as_bytes()).unwrap_err();
        assert!(
            matches!(err, DatasetError::Malformed { line: 2, .. }),
            "{err}"
        );
        assert!(read_ratings_csv("1,2,3\n".as_bytes()).is_err());
    }

    #[test]
    fn triples_round_trip() {
        let m = CsrMatrix::from_triples(3, 4, [(0, 3, 1.5), (2, 0, 2.0), (2, 1, 0.25)]).unwrap();
        let mut bytes = Vec::new();
        write_triples(&m, &mut bytes).unwrap();
        assert_eq!(bytes.len(), 8 + 24 + 3 * 12);
        assert_eq!(read_triples(bytes.as_slice()).unwrap(), m);
        assert!(matches!(
            read_triples(&bytes[..bytes.len() - 1]),
            Err(DatasetError::Io(_))
        ));
        assert!(matches!(
            read_triples(&b"NOTMAGIC"[..]),
            Err(DatasetError::BadMagic)
        ));
    }
}
