//! `inventory-orders`: order-level reservations. Inputs `inventory.commands.v1` (from
//! checkout, key order id) and `inventory.stock-results.v1` (the ledgers' answers, key order
//! id); outputs the per-product ledger commands (`inventory.stock-commands.v1`, key product
//! id) and the answers to checkout (`inventory.reservation-events.v1`, key order id). Expiry is
//! a durable timer per order. State: the order's [`Reservation`], under the order id.

use events::inventory::{
    InspectionOutcome, InventoryCommand, InventoryCommandKind, RejectReason, RejectedLine,
    Rejection, ReleaseCause, ReservationEvent, ReservationEventKind, ReservedLine, ReturnLine,
    StockCommand, StockCommandKind, StockCommandLine, StockResult, StockResultKind,
};
use runtime::state::{State, Timer};
use runtime::{ids, HandlerError, Input, Outputs, StatefulProcessor};

use crate::ledger_processor::now_ms;
use crate::order::{
    Answer, Cause, Effect, LineRequest, PlacedLine, Reason, Reply, Reservation, StockAsk,
};

pub struct Reservations {
    pub default_hold_ms: i64,
    pub stock_commands: String,
    pub answers: String,
}

fn reason(r: Reason) -> RejectReason {
    match r {
        Reason::OutOfStock => RejectReason::OutOfStock,
        Reason::UnknownProduct => RejectReason::UnknownProduct,
        Reason::InvalidQuantity => RejectReason::InvalidQuantity,
        Reason::DuplicateLine => RejectReason::DuplicateLine,
        Reason::ReservationNotFound => RejectReason::ReservationNotFound,
        Reason::ReservationExpired => RejectReason::ReservationExpired,
    }
}

fn reserved(lines: &[PlacedLine]) -> Vec<ReservedLine> {
    lines
        .iter()
        .map(|l| ReservedLine {
            line_number: l.line_number,
            product_id: l.product_id.clone(),
            quantity: i32::try_from(l.quantity).unwrap_or(i32::MAX),
            fulfillment_center: l.fulfillment_center.clone(),
        })
        .collect()
}

impl Reservations {
    /// Turns effects into records; `cause` identifies what caused them (for derived ids).
    fn apply(
        &self,
        order: &str,
        command_id: &str,
        cause: &str,
        effects: Vec<Effect>,
        state: &mut State<'_, Reservation>,
        out: &mut Outputs<'_>,
    ) -> Result<(), HandlerError> {
        let now = now_ms();
        for (i, effect) in effects.into_iter().enumerate() {
            let id = ids::derived(&[cause, &i.to_string()]);
            match effect {
                Effect::Timer(Some(at)) => state.set_timer(order, at, "expire"),
                Effect::Timer(None) => {
                    state.cancel_timer(order);
                }
                Effect::Ask { product_id, ask } => {
                    let (kind, lines, reason) = match ask {
                        StockAsk::Hold(lines) => (
                            StockCommandKind::Hold,
                            lines
                                .iter()
                                .map(|l| StockCommandLine {
                                    line_number: l.line_number,
                                    quantity: i32::try_from(l.quantity).unwrap_or(i32::MAX),
                                    fulfillment_center: l.preferred.clone(),
                                })
                                .collect(),
                            None,
                        ),
                        StockAsk::Release(why) => {
                            (StockCommandKind::Release, Vec::new(), Some(why.to_string()))
                        }
                        StockAsk::Commit => (StockCommandKind::Commit, Vec::new(), None),
                    };
                    let command = StockCommand {
                        event_id: id,
                        occurred_at: now,
                        correlation_id: order.to_string(),
                        causation_id: Some(cause.to_string()),
                        kind,
                        product_id: product_id.clone(),
                        order_id: Some(order.to_string()),
                        command_id: Some(command_id.to_string()),
                        lines,
                        level: None,
                        hold_ms: 0,
                        reason,
                        return_item: None,
                    };
                    out.send(&self.stock_commands, &product_id, &command)?;
                }
                Effect::Answer(answer) => {
                    let mut event = ReservationEvent {
                        event_id: id,
                        occurred_at: now,
                        correlation_id: order.to_string(),
                        causation_id: Some(cause.to_string()),
                        kind: ReservationEventKind::Unknown,
                        order_id: order.to_string(),
                        command_id: Some(command_id.to_string()),
                        lines: Vec::new(),
                        expires_at: None,
                        rejection: None,
                        release_cause: None,
                    };
                    match answer {
                        Answer::Reserved { lines, expires_at } => {
                            event.kind = ReservationEventKind::Reserved;
                            event.lines = reserved(&lines);
                            event.expires_at = Some(expires_at);
                        }
                        Answer::Rejected { reason: why, lines } => {
                            event.kind = ReservationEventKind::Rejected;
                            event.rejection = Some(Rejection {
                                reason: reason(why),
                                lines: lines
                                    .iter()
                                    .map(|l| RejectedLine {
                                        line_number: l.line_number,
                                        product_id: l.product_id.clone(),
                                        reason: reason(l.reason),
                                        requested_quantity: i32::try_from(l.requested)
                                            .unwrap_or(i32::MAX),
                                        available_quantity: l
                                            .available
                                            .map(|a| i32::try_from(a).unwrap_or(i32::MAX)),
                                    })
                                    .collect(),
                                message: None,
                            });
                        }
                        Answer::Committed { lines } => {
                            event.kind = ReservationEventKind::Committed;
                            event.lines = reserved(&lines);
                        }
                        Answer::CommitRejected { reason: why } => {
                            event.kind = ReservationEventKind::CommitRejected;
                            event.rejection = Some(Rejection {
                                reason: reason(why),
                                lines: Vec::new(),
                                message: None,
                            });
                        }
                        Answer::Released { lines, cause } => {
                            event.kind = ReservationEventKind::Released;
                            event.lines = reserved(&lines);
                            event.release_cause = Some(match cause {
                                Cause::Requested => ReleaseCause::Requested,
                                Cause::Expired => ReleaseCause::Expired,
                            });
                        }
                    }
                    out.send(&self.answers, order, &event)?;
                }
            }
        }
        Ok(())
    }

    async fn on_command(
        &mut self,
        cmd: InventoryCommand,
        state: &mut State<'_, Reservation>,
        out: &mut Outputs<'_>,
    ) -> Result<(), HandlerError> {
        let order = cmd.order_id.clone();
        let existing = state.get(&order).cloned();
        let (reservation, effects) = match (cmd.kind, existing) {
            (InventoryCommandKind::Reserve, None) => {
                let lines = cmd
                    .lines
                    .iter()
                    .map(|l| LineRequest {
                        line_number: l.line_number,
                        product_id: l.product_id.clone(),
                        quantity: i64::from(l.quantity),
                        preferred: l.fulfillment_center.clone(),
                    })
                    .collect();
                let hold = if cmd.hold_ms > 0 {
                    cmd.hold_ms
                } else {
                    self.default_hold_ms
                };
                Reservation::start(&cmd.command_id, lines, hold, now_ms())
            }
            (InventoryCommandKind::Reserve, Some(r)) => {
                let effects = r.reserve_again();
                (r, effects)
            }
            (InventoryCommandKind::Commit | InventoryCommandKind::Release, None) => {
                let effects = vec![Effect::Answer(
                    if cmd.kind == InventoryCommandKind::Commit {
                        Answer::CommitRejected {
                            reason: Reason::ReservationNotFound,
                        }
                    } else {
                        Answer::Released {
                            lines: Vec::new(),
                            cause: Cause::Requested,
                        }
                    },
                )];
                return self.apply(&order, &cmd.command_id, &cmd.event_id, effects, state, out);
            }
            (InventoryCommandKind::Commit, Some(mut r)) => {
                let effects = r.commit();
                (r, effects)
            }
            (InventoryCommandKind::Release, Some(mut r)) => {
                let effects = r.release();
                (r, effects)
            }
            (InventoryCommandKind::ReceiveReturn | InventoryCommandKind::RecordInspection, _) => {
                return self.forward_return(&cmd, out);
            }
            (InventoryCommandKind::Unknown, _) => {
                return Err(HandlerError::Invalid(
                    "inventory command of unknown kind".into(),
                ))
            }
        };
        let command_id = reservation.command_id.clone();
        state.put(&order, reservation);
        self.apply(&order, &command_id, &cmd.event_id, effects, state, out)
    }

    /// Returns concern one product's stock only: forwarded to its ledger.
    fn forward_return(
        &self,
        cmd: &InventoryCommand,
        out: &mut Outputs<'_>,
    ) -> Result<(), HandlerError> {
        let item = cmd
            .return_item
            .as_ref()
            .ok_or_else(|| HandlerError::Invalid(format!("{:?} without return_item", cmd.kind)))?;
        let kind = if cmd.kind == InventoryCommandKind::ReceiveReturn {
            StockCommandKind::ReceiveReturn
        } else {
            StockCommandKind::RecordInspection
        };
        let restockable = match (kind, item.outcome) {
            (StockCommandKind::ReceiveReturn, _) => None,
            (_, Some(InspectionOutcome::Restockable)) => Some(true),
            (_, Some(InspectionOutcome::Damaged)) => Some(false),
            (_, other) => {
                return Err(HandlerError::Invalid(format!(
                    "inspection of {} with outcome {other:?}",
                    item.return_id
                )))
            }
        };
        let command = StockCommand {
            event_id: ids::derived(&[&cmd.event_id, "return"]),
            occurred_at: now_ms(),
            correlation_id: cmd.order_id.clone(),
            causation_id: Some(cmd.event_id.clone()),
            kind,
            product_id: item.product_id.clone(),
            order_id: Some(cmd.order_id.clone()),
            command_id: Some(cmd.command_id.clone()),
            lines: Vec::new(),
            level: None,
            hold_ms: 0,
            reason: None,
            return_item: Some(ReturnLine {
                return_id: item.return_id.clone(),
                fulfillment_center: item.fulfillment_center.clone(),
                quantity: item.quantity,
                restockable,
            }),
        };
        out.send(&self.stock_commands, &item.product_id, &command)
    }

    async fn on_result(
        &mut self,
        result: StockResult,
        state: &mut State<'_, Reservation>,
        out: &mut Outputs<'_>,
    ) -> Result<(), HandlerError> {
        let Some(mut reservation) = state.get(&result.order_id).cloned() else {
            // An answer for an order this stage does not know: only a hold needs undoing.
            if result.kind == StockResultKind::Held {
                let effects = vec![Effect::Ask {
                    product_id: result.product_id.clone(),
                    ask: StockAsk::Release("compensation"),
                }];
                let command = result.command_id.clone().unwrap_or_default();
                return self.apply(
                    &result.order_id,
                    &command,
                    &result.event_id,
                    effects,
                    state,
                    out,
                );
            }
            return Ok(());
        };
        let reply = match result.kind {
            StockResultKind::Held => Reply::Held(
                result
                    .lines
                    .iter()
                    .map(|l| PlacedLine {
                        line_number: l.line_number,
                        product_id: result.product_id.clone(),
                        quantity: i64::from(l.quantity),
                        fulfillment_center: l.fulfillment_center.clone(),
                    })
                    .collect(),
            ),
            StockResultKind::Refused => Reply::Refused {
                available: result.available_quantity.map(i64::from),
            },
            StockResultKind::Released => Reply::Released,
            StockResultKind::Committed => Reply::Committed,
            StockResultKind::NotHeld => Reply::NotHeld,
            StockResultKind::Unknown => {
                return Err(HandlerError::Invalid("stock result of unknown kind".into()))
            }
        };
        let effects = reservation.on_reply(&result.product_id, reply);
        let command_id = reservation.command_id.clone();
        state.put(&result.order_id, reservation);
        self.apply(
            &result.order_id,
            &command_id,
            &result.event_id,
            effects,
            state,
            out,
        )
    }
}

impl StatefulProcessor for Reservations {
    type Value = Reservation;
    const STORE: &'static str = "reservations";

    async fn handle(
        &mut self,
        input: &Input,
        state: &mut State<'_, Reservation>,
        out: &mut Outputs<'_>,
    ) -> Result<(), HandlerError> {
        if input.topic.starts_with("inventory.stock-results") {
            let result: StockResult = input.decode()?;
            self.on_result(result, state, out).await
        } else {
            let cmd: InventoryCommand = input.decode()?;
            if input.key_str() != Some(cmd.order_id.as_str()) {
                return Err(HandlerError::Invalid(format!(
                    "inventory command for order {} under key {:?}: commands are keyed by order id",
                    cmd.order_id,
                    input.key_str()
                )));
            }
            self.on_command(cmd, state, out).await
        }
    }

    async fn on_timer(
        &mut self,
        timer: &Timer,
        state: &mut State<'_, Reservation>,
        out: &mut Outputs<'_>,
    ) -> Result<(), HandlerError> {
        let Some(mut reservation) = state.get(&timer.key).cloned() else {
            return Ok(());
        };
        let effects = reservation.expire();
        let command_id = reservation.command_id.clone();
        state.put(&timer.key, reservation);
        let cause = format!("expire:{}:{}", timer.key, timer.at_ms);
        self.apply(&timer.key, &command_id, &cause, effects, state, out)
    }
}
