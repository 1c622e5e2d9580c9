//! `storefleet.inventory`: the per-product ledger protocol (checkout's holds, commits and
//! releases, warehouse levels, returns, and the ledger's answers to holds), stock movements
//! and the availability projection.

use serde::{Deserialize, Serialize};

/// schemas/inventory/StockEvent.avsc — units of one product moved between buckets at one
/// fulfillment center (restock, adjustment, returns; not reservation holds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockEvent {
    pub event_id: String,
    pub occurred_at: i64,
    /// The order id for returns; `<txId>:<lsn>` for stock-CDC-driven changes.
    pub correlation_id: String,
    pub causation_id: Option<String>,
    pub kind: StockEventKind,
    pub product_id: String,
    pub fulfillment_center: String,
    pub quantity: i32,
    /// `None` when the units entered the ledger.
    pub from_status: Option<StockStatus>,
    /// `None` when the units left the ledger.
    pub to_status: Option<StockStatus>,
    pub levels: StockLevels,
    pub return_id: Option<String>,
    pub order_id: Option<String>,
    pub source_lsn: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StockEventKind {
    Unknown,
    Restocked,
    Adjusted,
    Arrived,
    ReturnReceived,
    ReturnRestocked,
    ReturnDamaged,
}

/// The bucket a unit of stock is in at a fulfillment center.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StockStatus {
    Unknown,
    Available,
    Reserved,
    InTransit,
    Damaged,
    PendingReturn,
}

/// Units per bucket at one fulfillment center after a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockLevels {
    pub available: i32,
    pub reserved: i32,
    pub in_transit: i32,
    pub damaged: i32,
    pub pending_return: i32,
}

/// schemas/inventory/ProductAvailability.avsc — compacted, slightly stale projection of
/// whether a product can be bought.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductAvailability {
    pub event_id: String,
    pub occurred_at: i64,
    /// The product id.
    pub correlation_id: String,
    pub causation_id: Option<String>,
    pub product_id: String,
    pub in_stock: bool,
    pub available_quantity: i32,
    /// Centers with zero may be omitted.
    pub fulfillment_centers: Vec<CenterAvailability>,
    /// Ledger version of the product; readers ignore older updates.
    pub sequence: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CenterAvailability {
    pub fulfillment_center: String,
    pub available_quantity: i32,
}

/// schemas/inventory/StockCommand.avsc — an instruction to the ledger
/// of one product (keyed by product id, so each product has one writer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockCommand {
    /// Derived from its cause, so a re-sent command has the same id.
    pub event_id: String,
    pub occurred_at: i64,
    /// The order id (HOLD/RELEASE/COMMIT) or the product id (SET_LEVEL).
    pub correlation_id: String,
    pub causation_id: Option<String>,
    pub kind: StockCommandKind,
    pub product_id: String,
    /// HOLD, RELEASE, COMMIT.
    pub order_id: Option<String>,
    pub command_id: Option<String>,
    /// HOLD: the lines to hold.
    pub lines: Vec<StockCommandLine>,
    /// SET_LEVEL: the new level.
    pub level: Option<StockLevel>,
    /// HOLD: informational (schema default 0); holds do not expire: the saga ends each one.
    pub hold_ms: i64,
    /// RELEASE: why (requested, expired, compensation).
    pub reason: Option<String>,
    /// RECEIVE_RETURN / RECORD_INSPECTION: the returned units.
    pub return_item: Option<ReturnLine>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StockCommandKind {
    Unknown,
    Hold,
    Release,
    Commit,
    SetLevel,
    ReceiveReturn,
    RecordInspection,
}

/// Returned units of one product (schemas/inventory/StockCommand.avsc `ReturnLine`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnLine {
    pub return_id: String,
    pub fulfillment_center: String,
    pub quantity: i32,
    /// RECORD_INSPECTION: back to available (true) or damaged (false).
    pub restockable: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockCommandLine {
    pub line_number: i32,
    pub quantity: i32,
    /// Preferred center; `None` lets the ledger choose.
    pub fulfillment_center: Option<String>,
}

/// The warehouse's on-hand units of one bucket (from `warehouse.public.stock`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockLevel {
    pub fulfillment_center: String,
    /// The warehouse's lowercase status text (`available`, `in_transit`, `damaged`,
    /// `pending_return`), a string in the schema, not a [`StockStatus`].
    pub status: String,
    /// Absolute level; 0 when the row was deleted.
    pub on_hand: i32,
    pub source_lsn: Option<i64>,
}

/// schemas/inventory/StockResult.avsc — what the ledger of one
/// product did for one order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockResult {
    pub event_id: String,
    pub occurred_at: i64,
    /// The order id.
    pub correlation_id: String,
    pub causation_id: Option<String>,
    pub kind: StockResultKind,
    pub order_id: String,
    pub command_id: Option<String>,
    pub product_id: String,
    /// HELD, RELEASED, COMMITTED: the units by fulfillment center.
    pub lines: Vec<StockResultLine>,
    /// REFUSED: sellable units when the ledger decided.
    pub available_quantity: Option<i32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StockResultKind {
    Unknown,
    Held,
    Refused,
    Released,
    Committed,
    NotHeld,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockResultLine {
    pub line_number: i32,
    pub quantity: i32,
    pub fulfillment_center: String,
}

/// One value of each top-level record with every optional field set and every list
/// non-empty.
#[cfg(test)]
pub(crate) mod samples {
    use super::*;

    const ORDER: &str = "ord-1";
    const PRODUCT: &str = "6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b";

    pub fn stock_event() -> StockEvent {
        StockEvent {
            event_id: "5b9f6a52-3c1d-4e8f-9a7b-1c2d3e4f5a6b".into(),
            occurred_at: 1_764_300_000_002,
            correlation_id: ORDER.into(),
            causation_id: Some("2b9f6a52-3c1d-4e8f-9a7b-1c2d3e4f5a6b".into()),
            kind: StockEventKind::ReturnRestocked,
            product_id: PRODUCT.into(),
            fulfillment_center: "FC-WEST-2".into(),
            quantity: 1,
            from_status: Some(StockStatus::PendingReturn),
            to_status: Some(StockStatus::Available),
            levels: StockLevels {
                available: 10,
                reserved: 2,
                in_transit: 5,
                damaged: 1,
                pending_return: 0,
            },
            return_id: Some("rma-1".into()),
            order_id: Some(ORDER.into()),
            source_lsn: Some(0x16_B374_D848),
        }
    }

    pub fn product_availability() -> ProductAvailability {
        ProductAvailability {
            event_id: "6b9f6a52-3c1d-4e8f-9a7b-1c2d3e4f5a6b".into(),
            occurred_at: 1_764_300_000_003,
            correlation_id: PRODUCT.into(),
            causation_id: Some("5b9f6a52-3c1d-4e8f-9a7b-1c2d3e4f5a6b".into()),
            product_id: PRODUCT.into(),
            in_stock: true,
            available_quantity: 12,
            fulfillment_centers: vec![
                CenterAvailability {
                    fulfillment_center: "FC-WEST-2".into(),
                    available_quantity: 10,
                },
                CenterAvailability {
                    fulfillment_center: "FC-EAST-1".into(),
                    available_quantity: 2,
                },
            ],
            sequence: 42,
        }
    }

    pub fn stock_command() -> StockCommand {
        StockCommand {
            event_id: "7b9f6a52-3c1d-4e8f-9a7b-1c2d3e4f5a6b".into(),
            occurred_at: 1_764_300_000_004,
            correlation_id: ORDER.into(),
            causation_id: Some("2b9f6a52-3c1d-4e8f-9a7b-1c2d3e4f5a6b".into()),
            kind: StockCommandKind::Hold,
            product_id: PRODUCT.into(),
            order_id: Some(ORDER.into()),
            command_id: Some("3b9f6a52-3c1d-4e8f-9a7b-1c2d3e4f5a6b".into()),
            lines: vec![StockCommandLine {
                line_number: 1,
                quantity: 2,
                fulfillment_center: Some("FC-WEST-2".into()),
            }],
            level: Some(StockLevel {
                fulfillment_center: "FC-WEST-2".into(),
                status: "available".into(),
                on_hand: 12,
                source_lsn: Some(0x16_B374_D848),
            }),
            hold_ms: 900_000,
            reason: Some("requested".into()),
            return_item: Some(ReturnLine {
                return_id: "rma-1".into(),
                fulfillment_center: "FC-WEST-2".into(),
                quantity: 1,
                restockable: Some(true),
            }),
        }
    }

    pub fn stock_result() -> StockResult {
        StockResult {
            event_id: "8b9f6a52-3c1d-4e8f-9a7b-1c2d3e4f5a6b".into(),
            occurred_at: 1_764_300_000_005,
            correlation_id: ORDER.into(),
            causation_id: Some("7b9f6a52-3c1d-4e8f-9a7b-1c2d3e4f5a6b".into()),
            kind: StockResultKind::Held,
            order_id: ORDER.into(),
            command_id: Some("3b9f6a52-3c1d-4e8f-9a7b-1c2d3e4f5a6b".into()),
            product_id: PRODUCT.into(),
            lines: vec![StockResultLine {
                line_number: 1,
                quantity: 2,
                fulfillment_center: "FC-WEST-2".into(),
            }],
            available_quantity: Some(12),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::samples;
    use super::*;
    use crate::schema_check::round_trip;

    // Each record is checked full (samples), empty (every union null, every list empty),
    // and once per enum symbol, so a symbol renamed on either side fails here.

    #[test]
    fn stock_event_matches_its_schema() {
        const FILE: &str = "inventory/StockEvent.avsc";
        let full = samples::stock_event();
        round_trip(FILE, &full);
        let empty = StockEvent {
            causation_id: None,
            kind: StockEventKind::Restocked,
            from_status: None,
            to_status: None,
            return_id: None,
            order_id: None,
            source_lsn: None,
            ..full.clone()
        };
        round_trip(FILE, &empty);
        for kind in [
            StockEventKind::Unknown,
            StockEventKind::Restocked,
            StockEventKind::Adjusted,
            StockEventKind::Arrived,
            StockEventKind::ReturnReceived,
            StockEventKind::ReturnRestocked,
            StockEventKind::ReturnDamaged,
        ] {
            round_trip(
                FILE,
                &StockEvent {
                    kind,
                    ..empty.clone()
                },
            );
        }
        for status in [
            StockStatus::Unknown,
            StockStatus::Available,
            StockStatus::Reserved,
            StockStatus::InTransit,
            StockStatus::Damaged,
            StockStatus::PendingReturn,
        ] {
            // The two fields are separate unions over one named enum: check both.
            round_trip(
                FILE,
                &StockEvent {
                    from_status: Some(status),
                    ..empty.clone()
                },
            );
            round_trip(
                FILE,
                &StockEvent {
                    to_status: Some(status),
                    ..empty.clone()
                },
            );
        }
    }

    #[test]
    fn product_availability_matches_its_schema() {
        const FILE: &str = "inventory/ProductAvailability.avsc";
        let full = samples::product_availability();
        round_trip(FILE, &full);
        round_trip(
            FILE,
            &ProductAvailability {
                causation_id: None,
                in_stock: false,
                available_quantity: 0,
                fulfillment_centers: vec![],
                ..full
            },
        );
    }

    #[test]
    fn stock_command_matches_its_schema() {
        const FILE: &str = "inventory/StockCommand.avsc";
        let full = samples::stock_command();
        round_trip(FILE, &full);
        let empty = StockCommand {
            causation_id: None,
            kind: StockCommandKind::Release,
            order_id: None,
            command_id: None,
            lines: vec![],
            level: None,
            hold_ms: 0,
            reason: None,
            return_item: None,
            ..full.clone()
        };
        round_trip(FILE, &empty);
        round_trip(
            FILE,
            &StockCommand {
                kind: StockCommandKind::ReceiveReturn,
                return_item: Some(ReturnLine {
                    restockable: None,
                    ..full.return_item.clone().expect("sample has a return")
                }),
                ..empty.clone()
            },
        );
        round_trip(
            FILE,
            &StockCommand {
                kind: StockCommandKind::SetLevel,
                lines: vec![StockCommandLine {
                    fulfillment_center: None,
                    ..full.lines[0].clone()
                }],
                level: Some(StockLevel {
                    source_lsn: None,
                    ..full.level.clone().expect("sample has a level")
                }),
                ..empty.clone()
            },
        );
        for kind in [
            StockCommandKind::Unknown,
            StockCommandKind::Hold,
            StockCommandKind::Release,
            StockCommandKind::Commit,
            StockCommandKind::SetLevel,
            StockCommandKind::ReceiveReturn,
            StockCommandKind::RecordInspection,
        ] {
            round_trip(
                FILE,
                &StockCommand {
                    kind,
                    ..empty.clone()
                },
            );
        }
    }

    #[test]
    fn stock_result_matches_its_schema() {
        const FILE: &str = "inventory/StockResult.avsc";
        let full = samples::stock_result();
        round_trip(FILE, &full);
        let empty = StockResult {
            causation_id: None,
            kind: StockResultKind::NotHeld,
            command_id: None,
            lines: vec![],
            available_quantity: None,
            ..full.clone()
        };
        round_trip(FILE, &empty);
        for kind in [
            StockResultKind::Unknown,
            StockResultKind::Held,
            StockResultKind::Refused,
            StockResultKind::Released,
            StockResultKind::Committed,
            StockResultKind::NotHeld,
        ] {
            round_trip(
                FILE,
                &StockResult {
                    kind,
                    ..empty.clone()
                },
            );
        }
    }
}
