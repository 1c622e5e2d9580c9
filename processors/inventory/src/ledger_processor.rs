//! `inventory`: the stock ledger processor. Input `inventory.stock-commands.v1` (key product
//! id): checkout's HOLD / COMMIT / RELEASE of one product for one order, the warehouse
//! feed's levels, the returns desk's returns. Outputs: the answer to a HOLD
//! (`inventory.stock-results.v1`, key order id, read by checkout), stock movements
//! (`inventory.stock-events.v1`) and the availability projection (`inventory.availability.v1`,
//! compacted, key product id). COMMIT and RELEASE are not answered: the saga that sends
//! them owns the hold (nothing else ends it), so they cannot be refused.
//!
//! State layout (one store, keys per product so a write never re-serialises other orders'
//! holds, which matters for a hot product):
//! - `<product>`: the centers and their buckets;
//! - `<product>/h/<order>`: the order's hold of this product while it is open, then how it
//!   ended, or that it was refused (so a command sent again answers the same, and a HOLD
//!   sent again after a refusal never holds), dropped by a timer an hour later;
//! - `<product>/c/<order>`: the same, as the first version wrote it (read, never written).
//!
//! Availability is published when a product goes in or out of stock, while it is low
//! (at most [`LOW_STOCK`] units), on warehouse changes, and otherwise when it moved by 1% since
//! the last published figure: the projection serves product pages and search, which need the
//! in-stock flag and an honest count, not a record per sale.

use std::collections::BTreeMap;

use events::inventory::{
    CenterAvailability, ProductAvailability, StockCommand, StockCommandKind, StockEvent,
    StockEventKind, StockLevels, StockResult, StockResultKind, StockResultLine, StockStatus,
};
use runtime::state::{State, Timer};
use runtime::{ids, Clock, HandlerError, Input, Outputs, RuntimeError, StatefulProcessor, Topic};
use topology::ProcessorSpec;

use crate::ledger::{
    Bucket, Center, Closed, EndOutcome, Ended, Hold, HoldOutcome, ProductStock, Want,
};

/// How long an ended hold's outcome is remembered for commands sent again.
const CLOSED_TTL_MS: i64 = 60 * 60 * 1000;

/// At or below this many sellable units every change of a product's availability is
/// published.
pub const LOW_STOCK: i64 = 100;

/// What the store holds under one key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Entry {
    Centers(BTreeMap<String, Center>),
    Hold(Hold),
    /// How a hold ended (first version, under `<product>/c/<order>`; read only).
    Closed(Closed),
    Ended(Ended),
    Return(ReturnStage),
}

/// The ledger, writing to the topics its spec binds to its output ports.
pub struct Ledger {
    pub results: Topic<StockResult>,
    pub events: Topic<StockEvent>,
    pub availability: Topic<ProductAvailability>,
    /// Sellable units last published per product (in memory: after a restart the next
    /// change of a product publishes it).
    published: std::collections::HashMap<String, i64>,
    clock: Clock,
}

impl Ledger {
    pub fn from_spec(spec: &ProcessorSpec) -> Result<Self, RuntimeError> {
        Ok(Self {
            results: Topic::output(spec, "results")?,
            events: Topic::output(spec, "events")?,
            availability: Topic::output(spec, "availability")?,
            published: std::collections::HashMap::new(),
            clock: Clock::system(),
        })
    }

    /// Reads the time from `clock` (tests: a paused one) instead of the system clock.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }
}

/// Whether a product whose sellable units went from `last` (last published; `None`: never
/// since this process started) to `now` should be published.
pub fn worth_publishing(last: Option<i64>, now: i64) -> bool {
    let Some(last) = last else { return true };
    if last == now {
        return false;
    }
    (last > 0) != (now > 0)
        || now <= LOW_STOCK
        || last <= LOW_STOCK
        || (now - last).abs() * 100 >= last
}

fn qty(n: i64) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// A center's buckets as a stock event reports them.
fn levels(c: &Center) -> StockLevels {
    StockLevels {
        available: qty(c.available),
        reserved: qty(c.reserved),
        in_transit: qty(c.in_transit),
        damaged: qty(c.damaged),
        pending_return: qty(c.pending_return),
    }
}

/// Loads the product's centers and `order`'s hold or outcome into a ledger value.
fn load(state: &State<'_, Entry>, product: &str, order: Option<&str>) -> ProductStock {
    let mut stock = ProductStock::default();
    if let Some(Entry::Centers(centers)) = state.get(product) {
        stock.centers = centers.clone();
    }
    if let Some(order) = order {
        match state.get(&format!("{product}/h/{order}")) {
            Some(Entry::Hold(hold)) => {
                stock.holds.insert(order.to_string(), hold.clone());
            }
            Some(Entry::Ended(ended)) => {
                stock.closed.insert(order.to_string(), ended.clone());
            }
            _ => {}
        }
        if let Some(Entry::Closed(how)) = state.get(&format!("{product}/c/{order}")) {
            stock.closed.entry(order.to_string()).or_insert(Ended {
                how: *how,
                command_id: String::new(),
                lines: Vec::new(),
            });
        }
    }
    stock
}

/// Writes back what `load` read and the command changed (only what changed: an unchanged
/// key stays out of the changelog).
fn store(
    state: &mut State<'_, Entry>,
    product: &str,
    order: Option<&str>,
    stock: &ProductStock,
    now: i64,
) {
    let centers = Entry::Centers(stock.centers.clone());
    if state.get(product) != Some(&centers) {
        state.put(product, centers);
    }
    let Some(order) = order else { return };
    let hold_key = format!("{product}/h/{order}");
    let wanted = match (stock.holds.get(order), stock.closed.get(order)) {
        (Some(hold), _) => Some(Entry::Hold(hold.clone())),
        (None, Some(ended)) if !ended.command_id.is_empty() => Some(Entry::Ended(ended.clone())),
        _ => None,
    };
    match wanted {
        Some(entry) if state.get(&hold_key) != Some(&entry) => {
            let ended = matches!(entry, Entry::Ended(_));
            state.put(&hold_key, entry);
            if ended {
                state.set_timer(&hold_key, now + CLOSED_TTL_MS, "forget");
            }
        }
        Some(_) => {}
        None => {
            if matches!(state.get(&hold_key), Some(Entry::Hold(_))) {
                state.delete(&hold_key);
            }
        }
    }
}

impl Ledger {
    fn result(
        &self,
        cmd: &StockCommand,
        order: &str,
        kind: StockResultKind,
        lines: &[crate::ledger::HeldLine],
        available: Option<i64>,
        now: i64,
    ) -> StockResult {
        StockResult {
            event_id: ids::derived(&[&cmd.event_id, "stock-result"]),
            occurred_at: now,
            correlation_id: order.to_string(),
            causation_id: Some(cmd.event_id.clone()),
            kind,
            order_id: order.to_string(),
            command_id: cmd.command_id.clone(),
            product_id: cmd.product_id.clone(),
            lines: lines
                .iter()
                .map(|l| StockResultLine {
                    line_number: l.line_number,
                    quantity: qty(l.quantity),
                    fulfillment_center: l.fulfillment_center.clone(),
                })
                .collect(),
            available_quantity: available.map(qty),
        }
    }

    fn availability(
        &self,
        cmd: &StockCommand,
        stock: &ProductStock,
        sequence: i64,
        now: i64,
    ) -> ProductAvailability {
        let available = stock.available();
        ProductAvailability {
            event_id: ids::derived(&[&cmd.event_id, "availability"]),
            occurred_at: now,
            correlation_id: cmd.product_id.clone(),
            causation_id: Some(cmd.event_id.clone()),
            product_id: cmd.product_id.clone(),
            in_stock: available > 0,
            available_quantity: qty(available),
            fulfillment_centers: stock
                .centers
                .iter()
                .map(|(name, c)| CenterAvailability {
                    fulfillment_center: name.clone(),
                    available_quantity: qty(c.available),
                })
                .collect(),
            sequence,
        }
    }
}

/// How far a return got (under `<product>/r/<return id>`), so redeliveries change nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ReturnStage {
    Received,
    Inspected,
}

impl Ledger {
    fn on_return(
        &self,
        cmd: &StockCommand,
        state: &mut State<'_, Entry>,
        stock: &mut ProductStock,
        out: &mut Outputs<'_>,
        now: i64,
    ) -> Result<(), HandlerError> {
        let item = cmd
            .return_item
            .as_ref()
            .ok_or_else(|| HandlerError::invalid(format!("{:?} without return_item", cmd.kind)))?;
        if item.quantity <= 0 {
            return Err(HandlerError::invalid(format!(
                "return {} of {} units",
                item.return_id, item.quantity
            )));
        }
        let key = format!("{}/r/{}", cmd.product_id, item.return_id);
        let stage = match state.get(&key) {
            Some(Entry::Return(stage)) => Some(*stage),
            _ => None,
        };
        let quantity = i64::from(item.quantity);
        let center = item.fulfillment_center.as_str();
        let mut moves = Vec::new();
        if stage.is_none() {
            stock.receive_return(center, quantity);
            moves.push((
                StockEventKind::ReturnReceived,
                None,
                StockStatus::PendingReturn,
            ));
        }
        let inspect = cmd.kind == StockCommandKind::RecordInspection;
        if inspect && stage != Some(ReturnStage::Inspected) {
            let restockable = item.restockable.ok_or_else(|| {
                HandlerError::invalid(format!(
                    "inspection of {} without an outcome",
                    item.return_id
                ))
            })?;
            stock.inspect_return(center, quantity, restockable);
            moves.push(if restockable {
                (
                    StockEventKind::ReturnRestocked,
                    Some(StockStatus::PendingReturn),
                    StockStatus::Available,
                )
            } else {
                (
                    StockEventKind::ReturnDamaged,
                    Some(StockStatus::PendingReturn),
                    StockStatus::Damaged,
                )
            });
        }
        let stage = if inspect {
            ReturnStage::Inspected
        } else {
            stage.unwrap_or(ReturnStage::Received)
        };
        state.put(&key, Entry::Return(stage));
        let c = stock.centers.get(center).cloned().unwrap_or_default();
        for (i, (kind, from, to)) in moves.into_iter().enumerate() {
            let event = StockEvent {
                event_id: ids::derived(&[&cmd.event_id, "return", &i.to_string()]),
                occurred_at: now,
                correlation_id: cmd.product_id.clone(),
                causation_id: Some(cmd.event_id.clone()),
                kind,
                product_id: cmd.product_id.clone(),
                fulfillment_center: center.to_string(),
                quantity: item.quantity,
                from_status: from,
                to_status: Some(to),
                levels: levels(&c),
                return_id: Some(item.return_id.clone()),
                order_id: cmd.order_id.clone(),
                source_lsn: None,
            };
            out.send(&self.events, &cmd.product_id, &event)?;
        }
        Ok(())
    }
}

impl StatefulProcessor for Ledger {
    type Value = Entry;
    const STORE: &'static str = "stock";

    async fn handle(
        &mut self,
        input: &Input,
        state: &mut State<'_, Entry>,
        out: &mut Outputs<'_>,
    ) -> Result<(), HandlerError> {
        let cmd: StockCommand = input.decode()?;
        let product = cmd.product_id.as_str();
        if input.key_str() != Some(product) {
            return Err(HandlerError::invalid(format!(
                "stock command for {product} under key {:?}: the ledger is partitioned by product id",
                input.key_str()
            )));
        }
        let now = self.clock.now_ms();
        let order = cmd.order_id.clone();
        let needs_order = || {
            order
                .clone()
                .ok_or_else(|| HandlerError::invalid(format!("{:?} without order_id", cmd.kind)))
        };
        let mut stock = load(state, product, order.as_deref());
        let before = stock.available();
        match cmd.kind {
            StockCommandKind::Hold => {
                let order = needs_order()?;
                let wants: Vec<Want> = cmd
                    .lines
                    .iter()
                    .map(|l| Want {
                        line_number: l.line_number,
                        quantity: i64::from(l.quantity),
                        preferred: l.fulfillment_center.clone(),
                    })
                    .collect();
                let command_id = cmd.command_id.clone().unwrap_or_default();
                let never_stocked = stock.centers.is_empty();
                let result = match stock.hold(&order, &command_id, &wants) {
                    HoldOutcome::Held(lines) => {
                        self.result(&cmd, &order, StockResultKind::Held, &lines, None, now)
                    }
                    HoldOutcome::Refused { available } => {
                        let available = (!never_stocked).then_some(available);
                        self.result(&cmd, &order, StockResultKind::Refused, &[], available, now)
                    }
                    HoldOutcome::AlreadyClosed(_) | HoldOutcome::Conflict { .. } => {
                        self.result(&cmd, &order, StockResultKind::NotHeld, &[], None, now)
                    }
                };
                out.send(&self.results, &order, &result)?;
            }
            StockCommandKind::Release | StockCommandKind::Commit => {
                let order = needs_order()?;
                let outcome = if cmd.kind == StockCommandKind::Release {
                    stock.release(&order)
                } else {
                    stock.commit(&order)
                };
                if let EndOutcome::NotHeld(None) = outcome {
                    // Only the saga that holds sends these, after its HOLD: an unknown hold
                    // is one that was refused (nothing to undo) or forgotten an hour after
                    // it ended.
                    tracing::debug!(product, %order, kind = ?cmd.kind, "no hold to end");
                }
            }
            StockCommandKind::SetLevel => {
                let level = cmd
                    .level
                    .as_ref()
                    .ok_or_else(|| HandlerError::invalid("SET_LEVEL without level"))?;
                let bucket = Bucket::parse(&level.status).ok_or_else(|| {
                    HandlerError::invalid(format!("unknown warehouse status `{}`", level.status))
                })?;
                let change =
                    stock.set_level(&level.fulfillment_center, bucket, i64::from(level.on_hand));
                if change.applied != 0 {
                    let c = &stock.centers[&level.fulfillment_center];
                    let event = StockEvent {
                        event_id: ids::derived(&[&cmd.event_id, "stock-event"]),
                        occurred_at: now,
                        correlation_id: product.to_string(),
                        causation_id: Some(cmd.event_id.clone()),
                        kind: if change.applied > 0 {
                            StockEventKind::Restocked
                        } else {
                            StockEventKind::Adjusted
                        },
                        product_id: product.to_string(),
                        fulfillment_center: level.fulfillment_center.clone(),
                        quantity: qty(change.applied.abs()),
                        from_status: None,
                        to_status: Some(StockStatus::Available),
                        levels: levels(c),
                        return_id: None,
                        order_id: None,
                        source_lsn: level.source_lsn,
                    };
                    out.send(&self.events, product, &event)?;
                }
                if change.shortfall > 0 {
                    tracing::warn!(product, center = %level.fulfillment_center, shortfall = change.shortfall, "warehouse counted fewer units than are held or sold");
                }
            }
            StockCommandKind::ReceiveReturn | StockCommandKind::RecordInspection => {
                self.on_return(&cmd, state, &mut stock, out, now)?;
            }
            StockCommandKind::Unknown => {
                return Err(HandlerError::invalid("stock command of unknown kind"))
            }
        }
        let available = stock.available();
        let warehouse = cmd.kind == StockCommandKind::SetLevel && available != before;
        let last = self.published.get(product).copied();
        if warehouse
            || state.get(product).is_none()
            || (available != before && worth_publishing(last, available))
        {
            out.send(
                &self.availability,
                product,
                &self.availability(&cmd, &stock, input.offset, now),
            )?;
            self.published.insert(product.to_string(), available);
        }
        store(state, product, order.as_deref(), &stock, now);
        Ok(())
    }

    async fn on_timer(
        &mut self,
        timer: &Timer,
        state: &mut State<'_, Entry>,
        _out: &mut Outputs<'_>,
    ) -> Result<(), HandlerError> {
        // Forget an ended hold's outcome.
        state.delete(&timer.key);
        Ok(())
    }
}
