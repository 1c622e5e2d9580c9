//! Plain SQL against the captured database (tokio-postgres): the publication, table shapes
//! from the catalog, the slot's health, and chunked snapshot reads.

use tasks::Tasks;
use tokio_postgres::Client;

use crate::convert::Datum;
use crate::schema::{Column, TableShape};
use crate::types::ColumnType;
use crate::CdcError;

/// Session settings under which text values parse the same as pgoutput's.
pub const SESSION_SETTINGS: &str =
    "SET TimeZone = 'UTC'; SET DateStyle = 'ISO'; SET extra_float_digits = 3; SET bytea_output = 'hex'";

/// A client with [`SESSION_SETTINGS`]; its connection's task runs on `tasks`.
pub async fn connect(url: &str, tasks: &Tasks) -> Result<Client, CdcError> {
    let client = ::pg::connect(url, "captured", tasks)
        .await
        .map_err(pg("connect"))?;
    client
        .batch_execute(SESSION_SETTINGS)
        .await
        .map_err(pg("session settings"))?;
    Ok(client)
}

pub fn pg(what: &'static str) -> impl Fn(tokio_postgres::Error) -> CdcError {
    move |source| CdcError::Postgres { what, source }
}

pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

pub fn quote_qualified(qualified: &str) -> String {
    qualified
        .split('.')
        .map(quote_ident)
        .collect::<Vec<_>>()
        .join(".")
}

/// Creates the publication for `tables`, or makes an existing one list exactly them.
pub async fn ensure_publication(
    client: &Client,
    publication: &str,
    tables: &[String],
) -> Result<(), CdcError> {
    let list = tables
        .iter()
        .map(|t| quote_qualified(t))
        .collect::<Vec<_>>()
        .join(", ");
    let exists = client
        .query_opt(
            "SELECT 1 FROM pg_publication WHERE pubname = $1",
            &[&publication],
        )
        .await
        .map_err(pg("look up publication"))?
        .is_some();
    let sql = if exists {
        format!(
            "ALTER PUBLICATION {} SET TABLE {list}",
            quote_ident(publication)
        )
    } else {
        format!(
            "CREATE PUBLICATION {} FOR TABLE {list}",
            quote_ident(publication)
        )
    };
    client
        .batch_execute(&sql)
        .await
        .map_err(pg("publication"))?;
    Ok(())
}

/// The table's columns in attribute order (the order pgoutput sends them), with the primary
/// key marked.
pub async fn table_shape(
    client: &Client,
    qualified: &str,
    record: &str,
) -> Result<TableShape, CdcError> {
    let (schema, table) = qualified
        .split_once('.')
        .ok_or_else(|| CdcError::Config(format!("`{qualified}` is not schema.table")))?;
    let rows = client
        .query(
            "SELECT a.attname::text, a.atttypid::oid, a.atttypmod, \
                    COALESCE(a.attnum = ANY(i.indkey), false) \
             FROM pg_attribute a \
             JOIN pg_class c ON c.oid = a.attrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary \
             WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 \
               AND NOT a.attisdropped AND a.attgenerated = '' \
             ORDER BY a.attnum",
            &[&schema, &table],
        )
        .await
        .map_err(pg("read table columns"))?;
    if rows.is_empty() {
        return Err(CdcError::Config(format!(
            "table {qualified} does not exist"
        )));
    }
    let columns: Vec<Column> = rows
        .iter()
        .map(|r| Column {
            name: r.get(0),
            ty: ColumnType::from_oid(r.get::<_, u32>(1), r.get(2)),
            key: r.get(3),
        })
        .collect();
    if !columns.iter().any(|c| c.key) {
        return Err(CdcError::Config(format!(
            "table {qualified} has no primary key: change events need a key"
        )));
    }
    Ok(TableShape {
        schema: schema.to_string(),
        table: table.to_string(),
        record: record.to_string(),
        columns,
    })
}

/// The slot as `pg_replication_slots` reports it.
#[derive(Debug, Clone)]
pub struct SlotState {
    pub confirmed_flush: Option<u64>,
    /// `reserved`, `extended`, `unreserved` or `lost` (WAL needed by the slot was removed).
    pub wal_status: String,
    /// Bytes of WAL the slot holds back (`pg_current_wal_lsn() - restart_lsn`).
    pub retained_bytes: i64,
}

pub async fn slot_state(client: &Client, slot: &str) -> Result<Option<SlotState>, CdcError> {
    let row = client
        .query_opt(
            "SELECT confirmed_flush_lsn::text, COALESCE(wal_status, 'lost'), \
                    COALESCE(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn), 0)::bigint \
             FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(pg("read slot"))?;
    Ok(row.map(|r| SlotState {
        confirmed_flush: r.get::<_, Option<String>>(0).and_then(|s| parse_lsn(&s)),
        wal_status: r.get(1),
        retained_bytes: r.get(2),
    }))
}

pub async fn drop_slot(client: &Client, slot: &str) -> Result<(), CdcError> {
    client
        .execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(pg("drop slot"))?;
    Ok(())
}

/// `X/Y` hex LSN text → 64-bit position.
pub fn parse_lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

pub fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xffff_ffff)
}

/// A snapshot transaction's visibility: `pg_current_snapshot()` (`xmin:xmax:xip,...`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Visibility {
    pub xmin: u64,
    pub xmax: u64,
    pub in_progress: Vec<u64>,
}

impl Visibility {
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.splitn(3, ':');
        let xmin = parts.next()?.parse().ok()?;
        let xmax = parts.next()?.parse().ok()?;
        let in_progress = match parts.next()? {
            "" => Vec::new(),
            list => list
                .split(',')
                .map(|x| x.parse().ok())
                .collect::<Option<_>>()?,
        };
        Some(Self {
            xmin,
            xmax,
            in_progress,
        })
    }

    /// True when the 32-bit transaction id `xid` (as pgoutput sends it) committed before the
    /// snapshot was taken, so its effects are in what the snapshot read.
    pub fn sees(&self, xid: u32) -> bool {
        // Widen the 32-bit xid into the snapshot's epoch (a run never spans 2^31 xids).
        let epoch = self.xmax & !0xffff_ffff;
        let mut full = epoch | u64::from(xid);
        if full > self.xmax + (1 << 31) {
            full = full.wrapping_sub(1 << 32);
        }
        if full >= self.xmax {
            return false;
        }
        full < self.xmin || !self.in_progress.contains(&full)
    }
}

/// Reads rows in primary-key order, `limit` at a time, after `after` (the last key read).
pub struct ChunkReader {
    /// `SELECT <every column>::text FROM <table>`.
    select: String,
    /// `(k1, k2) > (($1::text)::t1, ($2::text)::t2)`.
    after_condition: String,
    order_by: String,
    key_arity: usize,
}

impl ChunkReader {
    pub fn new(shape: &TableShape) -> Self {
        let columns = shape
            .columns
            .iter()
            .map(|c| format!("{}::text", quote_ident(&c.name)))
            .collect::<Vec<_>>()
            .join(", ");
        let keys: Vec<&Column> = shape.key_columns().collect();
        let order_by = keys
            .iter()
            .map(|c| quote_ident(&c.name))
            .collect::<Vec<_>>()
            .join(", ");
        let params = keys
            .iter()
            .enumerate()
            .map(|(i, c)| format!("(${}::text)::{}", i + 1, sql_type(&c.ty)))
            .collect::<Vec<_>>()
            .join(", ");
        Self {
            select: format!(
                "SELECT {columns} FROM {}.{}",
                quote_ident(&shape.schema),
                quote_ident(&shape.table)
            ),
            after_condition: format!("({order_by}) > ({params})"),
            order_by,
            key_arity: keys.len(),
        }
    }

    /// One chunk: rows as datums (in column order).
    pub async fn read(
        &self,
        client: &impl tokio_postgres::GenericClient,
        after: Option<&[String]>,
        limit: u32,
    ) -> Result<Vec<Vec<Datum>>, CdcError> {
        let filter = match after {
            Some(_) => format!(" WHERE {}", self.after_condition),
            None => String::new(),
        };
        let sql = format!(
            "{}{filter} ORDER BY {} LIMIT {limit}",
            self.select, self.order_by
        );
        let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = match after {
            Some(keys) if keys.len() == self.key_arity => keys
                .iter()
                .map(|k| k as &(dyn tokio_postgres::types::ToSql + Sync))
                .collect(),
            Some(_) => {
                return Err(CdcError::Config(
                    "snapshot resume key has the wrong arity".into(),
                ))
            }
            None => Vec::new(),
        };
        let rows = client
            .query(&sql, &params)
            .await
            .map_err(pg("snapshot chunk"))?;
        Ok(rows
            .iter()
            .map(|r| {
                (0..r.len())
                    .map(|i| match r.get::<_, Option<String>>(i) {
                        Some(s) => Datum::Text(s),
                        None => Datum::Null,
                    })
                    .collect()
            })
            .collect())
    }
}

/// The SQL type name to cast a key parameter to.
fn sql_type(ty: &ColumnType) -> &'static str {
    match ty {
        ColumnType::Bool => "boolean",
        ColumnType::Int2 => "smallint",
        ColumnType::Int4 => "integer",
        ColumnType::Int8 => "bigint",
        ColumnType::Float4 => "real",
        ColumnType::Float8 => "double precision",
        ColumnType::Numeric { .. } | ColumnType::NumericText => "numeric",
        ColumnType::Uuid => "uuid",
        ColumnType::Date => "date",
        ColumnType::Time => "time",
        ColumnType::Timestamp => "timestamp",
        ColumnType::TimestampTz => "timestamptz",
        ColumnType::Bytea => "bytea",
        _ => "text",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_text_round_trips() {
        assert_eq!(parse_lsn("16/B374D848"), Some(0x16_B374_D848));
        assert_eq!(format_lsn(0x16_B374_D848), "16/B374D848");
    }

    #[test]
    fn visibility_follows_pg_snapshot_rules() {
        let v = Visibility::parse("100:105:101,103").unwrap();
        assert!(v.sees(99));
        assert!(v.sees(100));
        assert!(!v.sees(101));
        assert!(v.sees(102));
        assert!(!v.sees(103));
        assert!(v.sees(104));
        assert!(!v.sees(105));
        assert!(!v.sees(200));
    }
}
