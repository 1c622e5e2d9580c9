//! One order's reservation across products: the all-or-nothing decision over the ledgers'
//! per-product answers, compensation of partial holds, commit, release and expiry. Pure: the
//! caller passes the time and turns [`Effect`]s into records and timers.
//!
//! Single writer: the `inventory-orders` instance owning the order's partition (commands and
//! ledger results are both keyed by order id).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Default hold when a RESERVE names none: 15 minutes.
pub const DEFAULT_HOLD_MS: i64 = 15 * 60 * 1000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineRequest {
    pub line_number: i32,
    pub product_id: String,
    pub quantity: i64,
    pub preferred: Option<String>,
}

/// Units of one line at one center (as held, committed or released).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacedLine {
    pub line_number: i32,
    pub product_id: String,
    pub quantity: i64,
    pub fulfillment_center: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Holds asked of every product; waiting for their answers.
    Holding,
    Reserved,
    Committing,
    Committed,
    /// Releasing every hold (requested, expired, or after a refusal).
    Releasing,
    Released,
    Rejected,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cause {
    Requested,
    Expired,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reason {
    OutOfStock,
    UnknownProduct,
    InvalidQuantity,
    DuplicateLine,
    ReservationNotFound,
    ReservationExpired,
}

/// A line the decision refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub line_number: i32,
    pub product_id: String,
    pub reason: Reason,
    pub requested: i64,
    pub available: Option<i64>,
}

/// What one product's ledger answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    Held(Vec<PlacedLine>),
    /// `available: None` when the product has never been stocked (unknown).
    Refused {
        available: Option<i64>,
    },
    Released,
    Committed,
    NotHeld,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub command_id: String,
    pub phase: Phase,
    pub lines: Vec<LineRequest>,
    pub held: BTreeMap<String, Vec<PlacedLine>>,
    /// Products that answered the current step.
    pub answered: BTreeMap<String, Reply>,
    pub expires_at: i64,
    pub cause: Option<Cause>,
    pub refusals: Vec<Refusal>,
}

/// What the order stage asks of a product's ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StockAsk {
    Hold(Vec<LineRequest>),
    Release(&'static str),
    Commit,
}

/// The order-level answer (a `ReservationEvent`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Reserved {
        lines: Vec<PlacedLine>,
        expires_at: i64,
    },
    Rejected {
        reason: Reason,
        lines: Vec<Refusal>,
    },
    Committed {
        lines: Vec<PlacedLine>,
    },
    CommitRejected {
        reason: Reason,
    },
    Released {
        lines: Vec<PlacedLine>,
        cause: Cause,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Ask {
        product_id: String,
        ask: StockAsk,
    },
    Answer(Answer),
    /// Fire the order's timer at this time; `None` cancels it.
    Timer(Option<i64>),
}

/// Validates a RESERVE: at least one line, positive quantities, one line per product.
pub fn validate(lines: &[LineRequest]) -> Result<(), (Reason, Vec<Refusal>)> {
    let refuse = |l: &LineRequest, reason| Refusal {
        line_number: l.line_number,
        product_id: l.product_id.clone(),
        reason,
        requested: l.quantity,
        available: None,
    };
    if lines.is_empty() {
        return Err((Reason::InvalidQuantity, Vec::new()));
    }
    let bad: Vec<Refusal> = lines
        .iter()
        .filter(|l| l.quantity <= 0)
        .map(|l| refuse(l, Reason::InvalidQuantity))
        .collect();
    if !bad.is_empty() {
        return Err((Reason::InvalidQuantity, bad));
    }
    let mut seen = BTreeMap::new();
    let mut dupes = Vec::new();
    for l in lines {
        if seen.insert(l.product_id.clone(), l.line_number).is_some() {
            dupes.push(refuse(l, Reason::DuplicateLine));
        }
    }
    if !dupes.is_empty() {
        return Err((Reason::DuplicateLine, dupes));
    }
    Ok(())
}

impl Reservation {
    /// A RESERVE for an order with no reservation yet.
    pub fn start(
        command_id: &str,
        lines: Vec<LineRequest>,
        hold_ms: i64,
        now: i64,
    ) -> (Self, Vec<Effect>) {
        let hold_ms = if hold_ms > 0 {
            hold_ms
        } else {
            DEFAULT_HOLD_MS
        };
        let mut r = Reservation {
            command_id: command_id.to_string(),
            phase: Phase::Holding,
            lines,
            held: BTreeMap::new(),
            answered: BTreeMap::new(),
            expires_at: now + hold_ms,
            cause: None,
            refusals: Vec::new(),
        };
        if let Err((reason, refused)) = validate(&r.lines) {
            r.phase = Phase::Rejected;
            r.refusals = refused.clone();
            return (
                r,
                vec![Effect::Answer(Answer::Rejected {
                    reason,
                    lines: refused,
                })],
            );
        }
        let mut effects: Vec<Effect> = r
            .lines
            .iter()
            .map(|l| Effect::Ask {
                product_id: l.product_id.clone(),
                ask: StockAsk::Hold(vec![l.clone()]),
            })
            .collect();
        effects.push(Effect::Timer(Some(r.expires_at)));
        (r, effects)
    }

    fn products(&self) -> impl Iterator<Item = &str> {
        self.lines.iter().map(|l| l.product_id.as_str())
    }

    fn placed(&self) -> Vec<PlacedLine> {
        self.held.values().flatten().cloned().collect()
    }

    /// A redelivered RESERVE: the answer already given, if any.
    pub fn reserve_again(&self) -> Vec<Effect> {
        match self.phase {
            Phase::Reserved => vec![Effect::Answer(Answer::Reserved {
                lines: self.placed(),
                expires_at: self.expires_at,
            })],
            Phase::Rejected => vec![Effect::Answer(Answer::Rejected {
                reason: self
                    .refusals
                    .first()
                    .map_or(Reason::OutOfStock, |r| r.reason),
                lines: self.refusals.clone(),
            })],
            _ => Vec::new(),
        }
    }

    pub fn commit(&mut self) -> Vec<Effect> {
        match self.phase {
            Phase::Reserved => {
                self.phase = Phase::Committing;
                self.answered.clear();
                self.held
                    .keys()
                    .map(|p| Effect::Ask {
                        product_id: p.clone(),
                        ask: StockAsk::Commit,
                    })
                    .collect()
            }
            Phase::Committing => Vec::new(),
            Phase::Committed => vec![Effect::Answer(Answer::Committed {
                lines: self.placed(),
            })],
            Phase::Released | Phase::Releasing if self.cause == Some(Cause::Expired) => {
                vec![Effect::Answer(Answer::CommitRejected {
                    reason: Reason::ReservationExpired,
                })]
            }
            _ => vec![Effect::Answer(Answer::CommitRejected {
                reason: Reason::ReservationNotFound,
            })],
        }
    }

    pub fn release(&mut self) -> Vec<Effect> {
        self.release_for(Cause::Requested)
    }

    /// The hold's timer fired.
    pub fn expire(&mut self) -> Vec<Effect> {
        match self.phase {
            Phase::Holding | Phase::Reserved => self.release_for(Cause::Expired),
            _ => Vec::new(),
        }
    }

    fn release_for(&mut self, cause: Cause) -> Vec<Effect> {
        match self.phase {
            Phase::Holding | Phase::Reserved => {
                self.phase = Phase::Releasing;
                self.cause = Some(cause);
                self.answered.clear();
                let reason = match cause {
                    Cause::Requested => "requested",
                    Cause::Expired => "expired",
                };
                let mut effects: Vec<Effect> = self
                    .products()
                    .map(|p| Effect::Ask {
                        product_id: p.to_string(),
                        ask: StockAsk::Release(reason),
                    })
                    .collect();
                effects.push(Effect::Timer(None));
                effects
            }
            Phase::Released if self.cause == Some(cause) => {
                vec![Effect::Answer(Answer::Released {
                    lines: self.placed(),
                    cause,
                })]
            }
            _ => Vec::new(),
        }
    }

    /// One product's ledger answered.
    pub fn on_reply(&mut self, product_id: &str, reply: Reply) -> Vec<Effect> {
        if !self.products().any(|p| p == product_id) {
            return Vec::new();
        }
        match (self.phase, &reply) {
            (Phase::Holding, _) => {
                if let Reply::Held(lines) = &reply {
                    self.held.insert(product_id.to_string(), lines.clone());
                }
                self.answered.insert(product_id.to_string(), reply);
                if self.answered.len() < self.lines.len() {
                    return Vec::new();
                }
                self.decide()
            }
            (Phase::Committing, Reply::Committed | Reply::NotHeld) => {
                self.answered.insert(product_id.to_string(), reply);
                if self.answered.len() < self.held.len() {
                    return Vec::new();
                }
                self.phase = Phase::Committed;
                vec![
                    Effect::Timer(None),
                    Effect::Answer(Answer::Committed {
                        lines: self.placed(),
                    }),
                ]
            }
            (Phase::Releasing, Reply::Released | Reply::NotHeld | Reply::Refused { .. }) => {
                self.answered.insert(product_id.to_string(), reply);
                if self.answered.len() < self.lines.len() {
                    return Vec::new();
                }
                self.phase = Phase::Released;
                let cause = self.cause.unwrap_or(Cause::Requested);
                vec![Effect::Answer(Answer::Released {
                    lines: self.placed(),
                    cause,
                })]
            }
            (Phase::Releasing, Reply::Held(lines)) => {
                // A hold that was still on its way when the release was sent: the release
                // that follows it on the product's partition drops it; record it only.
                self.held.insert(product_id.to_string(), lines.clone());
                Vec::new()
            }
            (Phase::Rejected | Phase::Released, Reply::Held(_)) => {
                // A hold that lands after the decision: give it back.
                vec![Effect::Ask {
                    product_id: product_id.to_string(),
                    ask: StockAsk::Release("compensation"),
                }]
            }
            _ => Vec::new(),
        }
    }

    /// Every product answered the holds: all held, or reject and give back what was held.
    fn decide(&mut self) -> Vec<Effect> {
        let refusals: Vec<Refusal> = self
            .lines
            .iter()
            .filter_map(|l| match self.answered.get(&l.product_id) {
                Some(Reply::Refused { available }) => Some(Refusal {
                    line_number: l.line_number,
                    product_id: l.product_id.clone(),
                    reason: if available.is_some() {
                        Reason::OutOfStock
                    } else {
                        Reason::UnknownProduct
                    },
                    requested: l.quantity,
                    available: *available,
                }),
                _ => None,
            })
            .collect();
        if refusals.is_empty() {
            self.phase = Phase::Reserved;
            return vec![Effect::Answer(Answer::Reserved {
                lines: self.placed(),
                expires_at: self.expires_at,
            })];
        }
        self.phase = Phase::Rejected;
        self.refusals = refusals.clone();
        let mut effects: Vec<Effect> = self
            .held
            .keys()
            .map(|p| Effect::Ask {
                product_id: p.clone(),
                ask: StockAsk::Release("compensation"),
            })
            .collect();
        self.held.clear();
        effects.push(Effect::Timer(None));
        effects.push(Effect::Answer(Answer::Rejected {
            reason: refusals[0].reason,
            lines: refusals,
        }));
        effects
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(n: i32, product: &str, quantity: i64) -> LineRequest {
        LineRequest {
            line_number: n,
            product_id: product.into(),
            quantity,
            preferred: None,
        }
    }

    fn held(n: i32, product: &str, quantity: i64) -> Reply {
        Reply::Held(vec![PlacedLine {
            line_number: n,
            product_id: product.into(),
            quantity,
            fulfillment_center: "FC-A".into(),
        }])
    }

    fn answers(effects: &[Effect]) -> Vec<&Answer> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Answer(a) => Some(a),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn all_products_held_reserves_and_commit_sells() {
        let (mut r, effects) =
            Reservation::start("c1", vec![line(1, "p1", 2), line(2, "p2", 1)], 0, 1_000);
        assert_eq!(
            effects
                .iter()
                .filter(|e| matches!(e, Effect::Ask { .. }))
                .count(),
            2
        );
        assert!(effects.contains(&Effect::Timer(Some(1_000 + DEFAULT_HOLD_MS))));
        assert!(r.on_reply("p1", held(1, "p1", 2)).is_empty());
        let decided = r.on_reply("p2", held(2, "p2", 1));
        assert!(matches!(answers(&decided)[..], [Answer::Reserved { .. }]));
        let asks = r.commit();
        assert_eq!(asks.len(), 2);
        r.on_reply("p1", Reply::Committed);
        let done = r.on_reply("p2", Reply::Committed);
        assert!(matches!(answers(&done)[..], [Answer::Committed { lines }] if lines.len() == 2));
        assert!(done.contains(&Effect::Timer(None)));
        assert_eq!(r.phase, Phase::Committed);
    }

    #[test]
    fn one_refusal_rejects_the_order_and_gives_back_the_other_holds() {
        let (mut r, _) = Reservation::start("c1", vec![line(1, "p1", 2), line(2, "p2", 5)], 0, 0);
        r.on_reply("p1", held(1, "p1", 2));
        let decided = r.on_reply("p2", Reply::Refused { available: Some(3) });
        assert!(decided.contains(&Effect::Ask {
            product_id: "p1".into(),
            ask: StockAsk::Release("compensation")
        }));
        match answers(&decided)[..] {
            [Answer::Rejected {
                reason: Reason::OutOfStock,
                lines,
            }] => {
                assert_eq!(lines.len(), 1);
                assert_eq!(lines[0].available, Some(3));
            }
            ref other => panic!("{other:?}"),
        }
        assert!(matches!(
            r.commit()[..],
            [Effect::Answer(Answer::CommitRejected {
                reason: Reason::ReservationNotFound
            })]
        ));
    }

    #[test]
    fn bad_lines_are_rejected_before_anything_is_held() {
        let (r, effects) = Reservation::start("c1", vec![line(1, "p1", 0)], 0, 0);
        assert_eq!(r.phase, Phase::Rejected);
        assert!(matches!(
            answers(&effects)[..],
            [Answer::Rejected {
                reason: Reason::InvalidQuantity,
                ..
            }]
        ));
        assert!(!effects.iter().any(|e| matches!(e, Effect::Ask { .. })));
        let (_, effects) = Reservation::start("c1", vec![line(1, "p1", 1), line(2, "p1", 1)], 0, 0);
        assert!(matches!(
            answers(&effects)[..],
            [Answer::Rejected {
                reason: Reason::DuplicateLine,
                ..
            }]
        ));
        let (_, effects) = Reservation::start("c1", Vec::new(), 0, 0);
        assert!(matches!(answers(&effects)[..], [Answer::Rejected { .. }]));
    }

    #[test]
    fn expiry_releases_and_a_late_commit_is_refused_as_expired() {
        let (mut r, _) = Reservation::start("c1", vec![line(1, "p1", 1)], 60_000, 0);
        r.on_reply("p1", held(1, "p1", 1));
        let asks = r.expire();
        assert!(asks.contains(&Effect::Ask {
            product_id: "p1".into(),
            ask: StockAsk::Release("expired")
        }));
        let done = r.on_reply("p1", Reply::Released);
        assert!(matches!(
            answers(&done)[..],
            [Answer::Released {
                cause: Cause::Expired,
                ..
            }]
        ));
        assert!(matches!(
            r.commit()[..],
            [Effect::Answer(Answer::CommitRejected {
                reason: Reason::ReservationExpired
            })]
        ));
        assert!(r.expire().is_empty(), "a timer fires once");
    }

    #[test]
    fn an_unknown_product_is_named_and_redelivered_reserves_answer_the_same() {
        let (mut r, _) = Reservation::start("c1", vec![line(1, "ghost", 1)], 0, 0);
        let decided = r.on_reply("ghost", Reply::Refused { available: None });
        assert!(matches!(
            answers(&decided)[..],
            [Answer::Rejected {
                reason: Reason::UnknownProduct,
                ..
            }]
        ));
        assert!(matches!(
            answers(&r.reserve_again())[..],
            [Answer::Rejected {
                reason: Reason::UnknownProduct,
                ..
            }]
        ));
    }

    #[test]
    fn a_hold_landing_after_a_rejection_is_given_back() {
        let (mut r, _) = Reservation::start("c1", vec![line(1, "p1", 1), line(2, "p2", 1)], 0, 0);
        r.on_reply("p2", Reply::Refused { available: Some(0) });
        // p1 answers only now: the reservation is not decided yet, so it decides now.
        let decided = r.on_reply("p1", held(1, "p1", 1));
        assert!(decided.contains(&Effect::Ask {
            product_id: "p1".into(),
            ask: StockAsk::Release("compensation")
        }));
        // A redelivered HELD after the decision is given back again (release is idempotent).
        let again = r.on_reply("p1", held(1, "p1", 1));
        assert_eq!(
            again,
            vec![Effect::Ask {
                product_id: "p1".into(),
                ask: StockAsk::Release("compensation")
            }]
        );
    }
}
