//! Compressed sparse row (CSR) matrices of interactions: users are rows, items are columns.
//!
//! ALS reads the matrix row by row twice per iteration (users, then items through the
//! transpose), so rows are contiguous runs of `(column, value)` with columns sorted and
//! unique. Building from triples sums duplicates, because a shopper buying the same item
//! twice is one stronger preference, not two separate ones.

use thiserror::Error;

/// A triple that does not fit the declared shape.
#[derive(Debug, Error, PartialEq)]
pub enum MatrixError {
    #[error("row {row} out of range for a matrix with {rows} rows")]
    RowOutOfRange { row: u32, rows: usize },
    #[error("column {column} out of range for a matrix with {columns} columns")]
    ColumnOutOfRange { column: u32, columns: usize },
    #[error("value {value} at ({row}, {column}) is not finite")]
    NotFinite { row: u32, column: u32, value: f32 },
}

/// A sparse `rows × cols` matrix of `f32` with sorted, unique column indices per row.
#[derive(Debug, Clone, PartialEq)]
pub struct CsrMatrix {
    rows: usize,
    cols: usize,
    indptr: Vec<usize>,
    indices: Vec<u32>,
    values: Vec<f32>,
}

impl CsrMatrix {
    /// Builds the matrix from `(row, column, value)` triples in any order; values of repeated
    /// `(row, column)` pairs are summed. Explicit zeros are kept (they still mark an
    /// observation).
    pub fn from_triples<I>(rows: usize, cols: usize, triples: I) -> Result<Self, MatrixError>
    where
        I: IntoIterator<Item = (u32, u32, f32)>,
    {
        let triples: Vec<(u32, u32, f32)> = triples.into_iter().collect();
        let mut counts = vec![0usize; rows + 1];
        for &(row, column, value) in &triples {
            if row as usize >= rows {
                return Err(MatrixError::RowOutOfRange { row, rows });
            }
            if column as usize >= cols {
                return Err(MatrixError::ColumnOutOfRange {
                    column,
                    columns: cols,
                });
            }
            if !value.is_finite() {
                return Err(MatrixError::NotFinite { row, column, value });
            }
            counts[row as usize + 1] += 1;
        }
        for r in 0..rows {
            counts[r + 1] += counts[r];
        }
        // Counting sort by row, then sort each row by column and merge duplicates in place.
        let mut next = counts.clone();
        let mut indices = vec![0u32; triples.len()];
        let mut values = vec![0f32; triples.len()];
        for &(row, column, value) in &triples {
            let slot = &mut next[row as usize];
            indices[*slot] = column;
            values[*slot] = value;
            *slot += 1;
        }
        drop(triples);
        let mut indptr = Vec::with_capacity(rows + 1);
        indptr.push(0);
        let mut write = 0usize;
        let mut pairs: Vec<(u32, f32)> = Vec::new();
        for r in 0..rows {
            pairs.clear();
            pairs.extend((counts[r]..counts[r + 1]).map(|k| (indices[k], values[k])));
            pairs.sort_unstable_by_key(|&(column, _)| column);
            let mut last: Option<u32> = None;
            for &(column, value) in &pairs {
                if last == Some(column) {
                    values[write - 1] += value;
                } else {
                    indices[write] = column;
                    values[write] = value;
                    write += 1;
                    last = Some(column);
                }
            }
            indptr.push(write);
        }
        indices.truncate(write);
        values.truncate(write);
        Ok(Self {
            rows,
            cols,
            indptr,
            indices,
            values,
        })
    }

    /// An all-empty matrix of the given shape.
    pub fn empty(rows: usize, cols: usize) -> Self {
        Self {
            rows,
            cols,
            indptr: vec![0; rows + 1],
            indices: Vec::new(),
            values: Vec::new(),
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Number of stored entries (after summing duplicates).
    pub fn nnz(&self) -> usize {
        self.indices.len()
    }

    /// Columns and values of one row, columns ascending.
    pub fn row(&self, row: usize) -> (&[u32], &[f32]) {
        let range = self.indptr[row]..self.indptr[row + 1];
        (&self.indices[range.clone()], &self.values[range])
    }

    /// Columns of one row, ascending.
    pub fn row_indices(&self, row: usize) -> &[u32] {
        &self.indices[self.indptr[row]..self.indptr[row + 1]]
    }

    /// Number of entries in one row.
    pub fn row_len(&self, row: usize) -> usize {
        self.indptr[row + 1] - self.indptr[row]
    }

    /// Row offsets: row `r` occupies `indptr()[r]..indptr()[r + 1]`.
    pub fn indptr(&self) -> &[usize] {
        &self.indptr
    }

    pub fn indices(&self) -> &[u32] {
        &self.indices
    }

    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// Whether `(row, column)` is stored (binary search in the row).
    pub fn contains(&self, row: usize, column: u32) -> bool {
        self.row_indices(row).binary_search(&column).is_ok()
    }

    /// The `cols × rows` transpose (items × users), with sorted columns per row.
    pub fn transpose(&self) -> Self {
        let mut indptr = vec![0usize; self.cols + 1];
        for &column in &self.indices {
            indptr[column as usize + 1] += 1;
        }
        for c in 0..self.cols {
            indptr[c + 1] += indptr[c];
        }
        let mut next = indptr.clone();
        let mut indices = vec![0u32; self.nnz()];
        let mut values = vec![0f32; self.nnz()];
        // Walking rows in order writes each transposed row's columns already sorted.
        for r in 0..self.rows {
            let (columns, row_values) = self.row(r);
            for (&column, &value) in columns.iter().zip(row_values) {
                let slot = &mut next[column as usize];
                indices[*slot] = r as u32;
                values[*slot] = value;
                *slot += 1;
            }
        }
        Self {
            rows: self.cols,
            cols: self.rows,
            indptr,
            indices,
            values,
        }
    }

    /// All entries as `(row, column, value)`, row-major.
    pub fn triples(&self) -> impl Iterator<Item = (u32, u32, f32)> + '_ {
        (0..self.rows).flat_map(move |r| {
            let (columns, values) = self.row(r);
            columns
                .iter()
                .zip(values)
                .map(move |(&c, &v)| (r as u32, c, v))
        })
    }

    /// The same pattern with every value replaced by `f(value)`.
    pub fn map_values(&self, f: impl Fn(f32) -> f32) -> Self {
        Self {
            values: self.values.iter().map(|&v| f(v)).collect(),
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_sorted_rows_and_sums_duplicates() {
        let m = CsrMatrix::from_triples(
            3,
            4,
            [
                (2, 3, 1.0),
                (0, 2, 1.0),
                (0, 0, 2.0),
                (2, 3, 0.5),
                (0, 2, 3.0),
            ],
        )
        .unwrap();
        assert_eq!(m.nnz(), 3);
        assert_eq!(m.row(0), (&[0u32, 2][..], &[2.0f32, 4.0][..]));
        assert_eq!(m.row(1), (&[][..], &[][..]));
        assert_eq!(m.row(2), (&[3u32][..], &[1.5f32][..]));
        assert!(m.contains(0, 2));
        assert!(!m.contains(1, 2));
    }

    #[test]
    fn rejects_out_of_range_and_non_finite() {
        assert_eq!(
            CsrMatrix::from_triples(2, 2, [(2, 0, 1.0)]),
            Err(MatrixError::RowOutOfRange { row: 2, rows: 2 })
        );
        assert!(matches!(
            CsrMatrix::from_triples(2, 2, [(0, 5, 1.0)]),
            Err(MatrixError::ColumnOutOfRange { .. })
        ));
        assert!(matches!(
            CsrMatrix::from_triples(2, 2, [(0, 0, f32::NAN)]),
            Err(MatrixError::NotFinite { .. })
        ));
    }

    #[test]
    fn transpose_round_trips_and_matches_dense() {
        let triples = [
            (0, 1, 1.0),
            (1, 0, 2.0),
            (1, 2, 3.0),
            (3, 1, 4.0),
            (3, 2, 5.0),
        ];
        let m = CsrMatrix::from_triples(4, 3, triples).unwrap();
        let t = m.transpose();
        assert_eq!((t.rows(), t.cols()), (3, 4));
        assert_eq!(t.row(1), (&[0u32, 3][..], &[1.0f32, 4.0][..]));
        assert_eq!(t.row(2), (&[1u32, 3][..], &[3.0f32, 5.0][..]));
        assert_eq!(t.transpose(), m);
        let mut back: Vec<_> = t.triples().map(|(r, c, v)| (c, r, v)).collect();
        back.sort_by_key(|&(r, c, _)| (r, c));
        assert_eq!(back, m.triples().collect::<Vec<_>>());
    }
}
