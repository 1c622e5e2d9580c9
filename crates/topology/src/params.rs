//! Typed parameters per processor and connector kind. They live here, beside the rest of the
//! configuration, so `fleet validate` checks them without linking the processors.

use serde::{Deserialize, Serialize};

use crate::model::ProcessorKind;

/// Parameters of one processor, by kind.
#[derive(Debug, Clone, PartialEq)]
pub enum ProcessorParams {
    Shipping(ShippingParams),
    Inventory(InventoryParams),
    InventoryOrders(InventoryOrdersParams),
    InventoryStockFeed(InventoryStockFeedParams),
}

impl ProcessorParams {
    pub(crate) fn parse(
        kind: ProcessorKind,
        raw: &serde_yaml::Value,
    ) -> Result<Self, serde_yaml::Error> {
        let raw = if raw.is_null() {
            serde_yaml::Value::Mapping(Default::default())
        } else {
            raw.clone()
        };
        Ok(match kind {
            ProcessorKind::Shipping => ProcessorParams::Shipping(serde_yaml::from_value(raw)?),
            ProcessorKind::Inventory => ProcessorParams::Inventory(serde_yaml::from_value(raw)?),
            ProcessorKind::InventoryOrders => {
                ProcessorParams::InventoryOrders(serde_yaml::from_value(raw)?)
            }
            ProcessorKind::InventoryStockFeed => {
                ProcessorParams::InventoryStockFeed(serde_yaml::from_value(raw)?)
            }
        })
    }
}

/// Shipping: order placed → shipment requested (and, simulated, label created and shipped).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ShippingParams {
    /// Carrier named on labels.
    #[serde(default = "default_carrier")]
    pub carrier: String,
    /// Fulfillment center used when the order names none.
    #[serde(default = "default_fc")]
    pub default_fulfillment_center: String,
}

fn default_carrier() -> String {
    "storefleet-post".to_string()
}

fn default_fc() -> String {
    "FC-EAST-1".to_string()
}

/// The stock ledger.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct InventoryParams {}

/// Order-level reservations.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InventoryOrdersParams {
    /// How long a reservation holds stock when the RESERVE names no hold (ms).
    #[serde(default = "default_hold_ms")]
    pub default_hold_ms: i64,
}

fn default_hold_ms() -> i64 {
    15 * 60 * 1000
}

/// The warehouse stock feed.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct InventoryStockFeedParams {}

/// The PostgreSQL change-data-capture connector.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresCdcParams {
    /// Database on the stack's PostgreSQL server (`STOREFLEET_POSTGRES` says where it runs).
    pub database: String,
    /// Logical replication slot (pgoutput); created on first start.
    pub slot: String,
    /// Publication listing the captured tables; created on first start.
    pub publication: String,
    /// Debezium's logical server name: `source.name` of every event.
    pub server_name: String,
    /// Rows per snapshot chunk (one progress checkpoint per chunk).
    #[serde(default = "default_chunk_rows")]
    pub snapshot_chunk_rows: u32,
    /// How often an idle connector acknowledges the server's WAL position and checks its slot.
    #[serde(default = "default_heartbeat_ms")]
    pub heartbeat_ms: u64,
    /// Where unconvertible rows go (a `storefleet.dlq.DeadLetter` topic).
    pub dead_letter: String,
    /// Captured tables.
    pub tables: Vec<CdcTable>,
}

fn default_chunk_rows() -> u32 {
    5_000
}

fn default_heartbeat_ms() -> u64 {
    5_000
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CdcTable {
    /// `schema.table`.
    pub table: String,
    pub topic: String,
    /// Avro record name prefix: `<record>Key`, `<record>Row`, `<record>Change`.
    pub record: String,
}
