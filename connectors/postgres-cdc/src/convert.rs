//! PostgreSQL text-format values (what pgoutput sends, and what the snapshot reads with
//! `::text`) into Avro values of the column's Avro type. Pure: no I/O.
//!
//! Both paths read with `DateStyle=ISO` and `TimeZone=UTC`, so one parser serves both.

use apache_avro::types::Value;
use thiserror::Error;

use crate::schema::TableShape;
use crate::types::ColumnType;

/// One column of a row as the source delivered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Datum {
    Null,
    /// pgoutput's `u`: a TOASTed value that the update did not change and did not send.
    UnchangedToast,
    Text(String),
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error("column `{column}`: cannot convert {value:?} to {expected}: {reason}")]
pub struct ConvertError {
    pub column: String,
    pub value: String,
    pub expected: String,
    pub reason: String,
}

/// Debezium's placeholder for an unchanged TOASTed value.
pub const UNAVAILABLE: &str = "__debezium_unavailable_value";

/// The row record (all columns, or the key columns only with the others null) and the names
/// of columns that carry the unchanged-TOAST placeholder.
pub fn row_value(
    shape: &TableShape,
    datums: &[Datum],
) -> Result<(Value, Vec<String>), ConvertError> {
    check_width(shape, datums)?;
    let mut fields = Vec::with_capacity(shape.columns.len());
    let mut unchanged = Vec::new();
    for (column, datum) in shape.columns.iter().zip(datums) {
        let value = match datum {
            Datum::Text(text) => {
                let v = convert_column(column, text)?;
                if column.key {
                    v
                } else {
                    Value::Union(1, Box::new(v))
                }
            }
            Datum::Null if column.key => {
                return Err(ConvertError {
                    column: column.name.clone(),
                    value: "NULL".into(),
                    expected: "a key value".into(),
                    reason: "key columns cannot be null".into(),
                })
            }
            Datum::Null => Value::Union(0, Box::new(Value::Null)),
            Datum::UnchangedToast => {
                unchanged.push(column.name.clone());
                match placeholder(&column.ty) {
                    Some(v) => Value::Union(1, Box::new(v)),
                    None => Value::Union(0, Box::new(Value::Null)),
                }
            }
        };
        fields.push((column.name.clone(), value));
    }
    Ok((Value::Record(fields), unchanged))
}

/// A key-only row (what an update or delete carries under the default replica identity):
/// the key columns, every other column null.
pub fn key_only_row(shape: &TableShape, key: &[Datum]) -> Result<Value, ConvertError> {
    let mut datums = Vec::with_capacity(shape.columns.len());
    let mut keys = key.iter();
    for column in &shape.columns {
        if column.key {
            datums.push(keys.next().cloned().unwrap_or(Datum::Null));
        } else {
            datums.push(Datum::Null);
        }
    }
    row_value(shape, &datums).map(|(v, _)| v)
}

/// The key record from a full row.
pub fn key_value(shape: &TableShape, datums: &[Datum]) -> Result<Value, ConvertError> {
    check_width(shape, datums)?;
    let mut fields = Vec::new();
    for (column, datum) in shape.columns.iter().zip(datums).filter(|(c, _)| c.key) {
        let Datum::Text(text) = datum else {
            return Err(ConvertError {
                column: column.name.clone(),
                value: format!("{datum:?}"),
                expected: "a key value".into(),
                reason: "key columns must be present".into(),
            });
        };
        let v = convert_column(column, text)?;
        fields.push((column.name.clone(), v));
    }
    Ok(Value::Record(fields))
}

fn check_width(shape: &TableShape, datums: &[Datum]) -> Result<(), ConvertError> {
    if datums.len() == shape.columns.len() {
        return Ok(());
    }
    Err(ConvertError {
        column: "*".into(),
        value: format!("{} values", datums.len()),
        expected: format!("{} columns of {}", shape.columns.len(), shape.qualified()),
        reason: "row width differs from the relation".into(),
    })
}

/// The placeholder of an unchanged TOASTed value; `None` for types that are never TOASTed.
fn placeholder(ty: &ColumnType) -> Option<Value> {
    match ty {
        ColumnType::Text | ColumnType::Json | ColumnType::NumericText | ColumnType::Other(_) => {
            Some(Value::String(UNAVAILABLE.into()))
        }
        ColumnType::Bytea => Some(Value::Bytes(UNAVAILABLE.as_bytes().to_vec())),
        ColumnType::Array(_) => Some(Value::Array(Vec::new())),
        _ => None,
    }
}

fn convert_column(column: &crate::schema::Column, text: &str) -> Result<Value, ConvertError> {
    convert(&column.ty, text).map_err(|reason| ConvertError {
        column: column.name.clone(),
        value: text.to_string(),
        expected: format!("{:?}", column.ty),
        reason,
    })
}

/// Converts one non-null text value.
pub fn convert(ty: &ColumnType, text: &str) -> Result<Value, String> {
    Ok(match ty {
        ColumnType::Bool => match text {
            "t" | "true" => Value::Boolean(true),
            "f" | "false" => Value::Boolean(false),
            _ => return Err("not a boolean".into()),
        },
        ColumnType::Int2 | ColumnType::Int4 => {
            Value::Int(text.parse().map_err(|e| format!("{e}"))?)
        }
        ColumnType::Int8 => Value::Long(text.parse().map_err(|e| format!("{e}"))?),
        ColumnType::Float4 => Value::Float(parse_float(text)? as f32),
        ColumnType::Float8 => Value::Double(parse_float(text)?),
        ColumnType::Numeric { scale, .. } => {
            Value::Decimal(apache_avro::Decimal::from(decimal_bytes(text, *scale)?))
        }
        ColumnType::NumericText
        | ColumnType::Text
        | ColumnType::Uuid
        | ColumnType::Json
        | ColumnType::Other(_) => Value::String(text.to_string()),
        ColumnType::Bytea => Value::Bytes(parse_bytea(text)?),
        ColumnType::Date => Value::Date(parse_date(text)?),
        ColumnType::Time => Value::TimeMicros(parse_time(text)?),
        ColumnType::Timestamp => Value::LocalTimestampMicros(parse_timestamp(text, false)?),
        ColumnType::TimestampTz => Value::TimestampMicros(parse_timestamp(text, true)?),
        ColumnType::Array(element) => {
            let items = parse_array(text)?
                .into_iter()
                .map(|item| match item {
                    None => Ok(Value::Union(0, Box::new(Value::Null))),
                    Some(s) => convert(element, &s).map(|v| Value::Union(1, Box::new(v))),
                })
                .collect::<Result<Vec<_>, _>>()?;
            Value::Array(items)
        }
    })
}

fn parse_float(text: &str) -> Result<f64, String> {
    match text {
        "NaN" => Ok(f64::NAN),
        "Infinity" => Ok(f64::INFINITY),
        "-Infinity" => Ok(f64::NEG_INFINITY),
        _ => text.parse().map_err(|e| format!("{e}")),
    }
}

/// The unscaled value of a decimal text at `scale`, as big-endian two's complement.
pub fn decimal_bytes(text: &str, scale: u32) -> Result<Vec<u8>, String> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() && fraction.is_empty()
        || !whole
            .chars()
            .chain(fraction.chars())
            .all(|c| c.is_ascii_digit())
    {
        return Err("not a finite decimal".into());
    }
    let scale = scale as usize;
    if fraction.len() > scale && fraction[scale..].chars().any(|c| c != '0') {
        return Err(format!("more than {scale} fractional digits"));
    }
    let mut unscaled: i128 = 0;
    let padded = fraction.chars().chain(std::iter::repeat('0')).take(scale);
    for c in whole.chars().chain(padded) {
        let d = i128::from(c as u8 - b'0');
        unscaled = unscaled
            .checked_mul(10)
            .and_then(|v| v.checked_add(d))
            .ok_or("decimal out of range")?;
    }
    if negative {
        unscaled = -unscaled;
    }
    Ok(minimal_twos_complement(unscaled))
}

fn minimal_twos_complement(v: i128) -> Vec<u8> {
    let bytes = v.to_be_bytes();
    let mut start = 0;
    while start < bytes.len() - 1 {
        let (b, next) = (bytes[start], bytes[start + 1]);
        let redundant = (b == 0x00 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0);
        if !redundant {
            break;
        }
        start += 1;
    }
    bytes[start..].to_vec()
}

fn parse_bytea(text: &str) -> Result<Vec<u8>, String> {
    let hex = text
        .strip_prefix("\\x")
        .ok_or("bytea not in hex output format")?;
    if hex.len() % 2 != 0 {
        return Err("odd number of hex digits".into());
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|e| e.to_string()))
        .collect()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn parse_date(text: &str) -> Result<i32, String> {
    let days = date_days(text)?;
    i32::try_from(days).map_err(|_| "date out of range".into())
}

fn date_days(text: &str) -> Result<i64, String> {
    if text.ends_with(" BC") || text.contains("infinity") {
        return Err("dates before year 1 and infinities are not supported".into());
    }
    let mut parts = text.splitn(3, '-');
    let mut next = |what: &str| -> Result<i64, String> {
        parts
            .next()
            .ok_or(format!("missing {what}"))?
            .parse::<i64>()
            .map_err(|e| format!("{what}: {e}"))
    };
    let (y, m, d) = (next("year")?, next("month")?, next("day")?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return Err("not a date".into());
    }
    Ok(days_from_civil(y, m, d))
}

/// `HH:MM:SS[.ffffff]` → microseconds since midnight.
fn parse_time(text: &str) -> Result<i64, String> {
    let (hms, fraction) = text.split_once('.').unwrap_or((text, ""));
    let mut parts = hms.split(':');
    let mut next = || -> Result<i64, String> {
        parts
            .next()
            .ok_or("missing time field")?
            .parse::<i64>()
            .map_err(|e| e.to_string())
    };
    let (h, m, s) = (next()?, next()?, next()?);
    if fraction.len() > 6 || !fraction.chars().all(|c| c.is_ascii_digit()) {
        return Err("bad fractional seconds".into());
    }
    let micros: i64 = if fraction.is_empty() {
        0
    } else {
        format!("{fraction:0<6}")
            .parse()
            .map_err(|_| "bad fraction")?
    };
    Ok(((h * 60 + m) * 60 + s) * 1_000_000 + micros)
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff][±HH[:MM[:SS]]]` → microseconds since the epoch (UTC when
/// an offset is present).
fn parse_timestamp(text: &str, with_zone: bool) -> Result<i64, String> {
    let (date, rest) = text.split_once(' ').ok_or("not a timestamp")?;
    let days = date_days(date)?;
    let (time, offset_secs) = if with_zone {
        let at = rest.rfind(['+', '-']).ok_or("timestamptz without offset")?;
        let (time, offset) = rest.split_at(at);
        let sign = if offset.starts_with('-') { -1 } else { 1 };
        let mut secs = 0i64;
        for (i, part) in offset[1..].split(':').enumerate() {
            let v: i64 = part.parse().map_err(|_| "bad offset")?;
            secs += v * [3600, 60, 1].get(i).copied().ok_or("bad offset")?;
        }
        (time, sign * secs)
    } else {
        (rest, 0)
    };
    let micros = parse_time(time)?;
    Ok((days * 86_400 - offset_secs) * 1_000_000 + micros)
}

/// A one-dimensional array literal (`{a,"b c",NULL}`) into its elements' texts.
pub fn parse_array(text: &str) -> Result<Vec<Option<String>>, String> {
    let inner = text
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .ok_or("not an array literal")?;
    if inner.starts_with('{') {
        return Err("multi-dimensional arrays are not supported".into());
    }
    let mut items = Vec::new();
    if inner.is_empty() {
        return Ok(items);
    }
    let mut chars = inner.chars().peekable();
    loop {
        let item = if chars.peek() == Some(&'"') {
            chars.next();
            let mut s = String::new();
            loop {
                match chars.next() {
                    Some('\\') => s.push(chars.next().ok_or("dangling escape")?),
                    Some('"') => break,
                    Some(c) => s.push(c),
                    None => return Err("unterminated quoted element".into()),
                }
            }
            Some(s)
        } else {
            let mut s = String::new();
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                s.push(c);
                chars.next();
            }
            (s != "NULL").then_some(s)
        };
        items.push(item);
        match chars.next() {
            None => return Ok(items),
            Some(',') => {}
            Some(c) => return Err(format!("unexpected {c:?} after an element")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decimals_are_unscaled_twos_complement() {
        assert_eq!(decimal_bytes("123.45", 2).unwrap(), vec![0x30, 0x39]);
        assert_eq!(decimal_bytes("-1", 2).unwrap(), vec![0x9c]);
        assert_eq!(decimal_bytes("-1.28", 2).unwrap(), vec![0x80]);
        assert_eq!(decimal_bytes("-1.29", 2).unwrap(), vec![0xff, 0x7f]);
        assert_eq!(decimal_bytes("1.5", 2).unwrap(), vec![0x00, 0x96]);
        assert!(decimal_bytes("1.234", 2).is_err());
        assert_eq!(decimal_bytes("1.230", 2).unwrap(), vec![0x7b]);
        assert!(decimal_bytes("NaN", 2).is_err());
    }

    #[test]
    fn timestamps_parse_to_utc_micros() {
        assert_eq!(parse_timestamp("1970-01-01 00:00:00+00", true).unwrap(), 0);
        assert_eq!(
            parse_timestamp("1970-01-01 01:00:00.5+01", true).unwrap(),
            500_000
        );
        assert_eq!(
            parse_timestamp("2000-03-01 00:00:00-05:30", true).unwrap(),
            (days_from_civil(2000, 3, 1) * 86_400 + 5 * 3600 + 1800) * 1_000_000
        );
        assert_eq!(
            parse_timestamp("1970-01-02 00:00:01", false).unwrap(),
            86_401_000_000
        );
        assert_eq!(parse_date("2026-11-28").unwrap(), 20_785);
    }

    #[test]
    fn arrays_parse_quotes_escapes_and_nulls() {
        assert_eq!(
            parse_array(r#"{a,"b c","d\"e",NULL,"NULL"}"#).unwrap(),
            vec![
                Some("a".into()),
                Some("b c".into()),
                Some("d\"e".into()),
                None,
                Some("NULL".into())
            ]
        );
        assert_eq!(parse_array("{}").unwrap(), Vec::<Option<String>>::new());
        assert!(parse_array("{{1,2},{3,4}}").is_err());
    }

    proptest! {
        #[test]
        fn decimal_round_trips(unscaled in -10i128.pow(15)..10i128.pow(15)) {
            let text = format!("{}{}.{:02}", if unscaled < 0 { "-" } else { "" }, unscaled.abs() / 100, unscaled.abs() % 100);
            let bytes = decimal_bytes(&text, 2).unwrap();
            let mut buf = [if bytes[0] & 0x80 != 0 { 0xff } else { 0 }; 16];
            buf[16 - bytes.len()..].copy_from_slice(&bytes);
            prop_assert_eq!(i128::from_be_bytes(buf), unscaled);
        }
    }
}
