//! `inventory-stock-feed`: the warehouse's stock changes (`cdc.warehouse.stock.v1`, keyed by
//! the stock row's primary key) as ledger commands keyed by product id, so the one ledger
//! instance owning a product applies them in order with everything else about it. Stateless:
//! a level is absolute, so a re-sent one changes nothing.

use events::inventory::{StockCommand, StockCommandKind, StockLevel};
use runtime::{ids, HandlerError, Input, Outputs, Processor, RuntimeError, Topic};
use serde::Deserialize;
use topology::ProcessorSpec;

/// The parts of the Debezium envelope of `warehouse.public.stock` the feed reads.
#[derive(Debug, Deserialize)]
struct Change {
    before: Option<Row>,
    after: Option<Row>,
    source: Source,
    op: String,
}

#[derive(Debug, Deserialize)]
struct Row {
    product_id: String,
    fulfillment_center: String,
    status: String,
    on_hand: Option<i32>,
}

#[derive(Debug, Deserialize)]
struct Source {
    lsn: Option<i64>,
}

pub struct StockFeed {
    /// Port `commands`: the ledgers' input.
    pub commands: Topic<StockCommand>,
}

impl StockFeed {
    pub fn from_spec(spec: &ProcessorSpec) -> Result<Self, RuntimeError> {
        Ok(Self {
            commands: Topic::output(spec, "commands")?,
        })
    }
}

impl Processor for StockFeed {
    async fn handle(&mut self, input: &Input, out: &mut Outputs<'_>) -> Result<(), HandlerError> {
        if input.value.is_none() {
            // The tombstone after a delete: the delete itself already set the level to 0.
            return Ok(());
        }
        let change: Change = input.decode()?;
        let (row, on_hand) = match (change.op.as_str(), change.after, change.before) {
            ("d", _, Some(before)) => (before, 0),
            (_, Some(after), _) => {
                let on_hand = after.on_hand.unwrap_or(0);
                (after, on_hand)
            }
            (op, _, _) => {
                return Err(HandlerError::invalid(format!(
                    "stock change `{op}` without a row"
                )))
            }
        };
        let command = StockCommand {
            event_id: ids::derived(&[&input.coordinates(), "set-level"]),
            occurred_at: runtime::now_ms(),
            correlation_id: row.product_id.clone(),
            causation_id: None,
            kind: StockCommandKind::SetLevel,
            product_id: row.product_id.clone(),
            order_id: None,
            command_id: None,
            lines: Vec::new(),
            level: Some(StockLevel {
                fulfillment_center: row.fulfillment_center,
                status: row.status,
                on_hand,
                source_lsn: change.source.lsn,
            }),
            hold_ms: 0,
            reason: None,
            return_item: None,
        };
        out.send(&self.commands, &row.product_id, &command)
    }
}
