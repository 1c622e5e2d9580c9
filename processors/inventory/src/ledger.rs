//! The stock ledger of one product: units per fulfillment center and bucket, the holds of
//! orders, and what the warehouse last reported. Pure: no I/O, no clock.
//!
//! Single writer: the inventory instance owning the product's partition of
//! `inventory.stock-commands.v1` applies every change, one command at a time, so two orders
//! can never both take the last unit.
//!
//! Invariants (property-tested below): `available >= 0` everywhere; `reserved` equals the sum
//! of the holds; and `available + reserved + committed` changes only by what the warehouse
//! adds (restocks, returns restocked) or takes (adjustments, limited to unheld units).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub type Qty = i64;

/// The buckets of one fulfillment center.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Center {
    /// Sellable units not held.
    pub available: Qty,
    /// Units held by orders (sum of the holds at this center).
    pub reserved: Qty,
    /// Units sold (committed holds) and not yet shipped.
    pub committed: Qty,
    pub in_transit: Qty,
    pub damaged: Qty,
    pub pending_return: Qty,
    /// The warehouse's last reported on-hand level of its `available` bucket.
    pub reported_available: Qty,
    /// Units an adjustment down could not take because they were held or sold: the
    /// warehouse counted fewer than the ledger promised (an operator must look).
    pub shortfall: Qty,
}

/// Units of one order line held at one center.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldLine {
    pub line_number: i32,
    pub fulfillment_center: String,
    pub quantity: Qty,
}

/// One order's hold on this product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    pub command_id: String,
    pub lines: Vec<HeldLine>,
}

/// How an order's hold ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Closed {
    Released,
    Committed,
    /// Never held: the order's HOLD was refused. Final, like the others: the saga fails on
    /// a refusal (all or nothing) and never releases what it was refused.
    Refused,
}

/// An ended hold, remembered for a while so a command sent again (a checkout handling its
/// records again after a crash, or its step timer re-sending a HOLD whose answer it has not
/// read yet) is answered as the first time: a committed hold's HOLD gets the same lines back,
/// a released one's nothing, a refused one a refusal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ended {
    pub how: Closed,
    pub command_id: String,
    pub lines: Vec<HeldLine>,
}

/// A line asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Want {
    pub line_number: i32,
    pub quantity: Qty,
    pub preferred: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HoldOutcome {
    /// Held now, or already held by an earlier delivery of the same command.
    Held(Vec<HeldLine>),
    /// Nothing held: not enough sellable units (now, or when the order's first HOLD came:
    /// a refusal is final).
    Refused { available: Qty },
    /// The order already holds this product under another command: nothing changes (the
    /// checkout saga sends one hold per order and product, so this is a caller's bug).
    Conflict { command_id: String },
    /// The order's hold already ended (a late redelivery): nothing changes.
    AlreadyClosed(Closed),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndOutcome {
    Ended(Vec<HeldLine>),
    /// No hold: unknown order, or it ended already (the `Closed` says how).
    NotHeld(Option<Closed>),
}

/// Warehouse buckets a stock row can be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    Available,
    InTransit,
    Damaged,
    PendingReturn,
}

impl Bucket {
    pub fn parse(status: &str) -> Option<Self> {
        match status {
            "available" => Some(Self::Available),
            "in_transit" => Some(Self::InTransit),
            "damaged" => Some(Self::Damaged),
            "pending_return" => Some(Self::PendingReturn),
            _ => None,
        }
    }
}

/// What a warehouse level did to the sellable units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LevelChange {
    /// Units added to (positive) or taken from (negative) `available`.
    pub applied: Qty,
    /// Units the warehouse removed that were held or sold.
    pub shortfall: Qty,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductStock {
    pub centers: BTreeMap<String, Center>,
    pub holds: BTreeMap<String, Hold>,
    pub closed: BTreeMap<String, Ended>,
}

impl ProductStock {
    pub fn available(&self) -> Qty {
        self.centers.values().map(|c| c.available).sum()
    }

    /// Holds `wants` for `order`, all or nothing. Each line takes units from its preferred
    /// center first, then from the centers with the most sellable units (a line may be split
    /// across centers).
    pub fn hold(&mut self, order: &str, command_id: &str, wants: &[Want]) -> HoldOutcome {
        if let Some(hold) = self.holds.get(order) {
            if hold.command_id != command_id {
                return HoldOutcome::Conflict {
                    command_id: hold.command_id.clone(),
                };
            }
            return HoldOutcome::Held(hold.lines.clone());
        }
        if let Some(ended) = self.closed.get(order) {
            return match ended.how {
                Closed::Committed if ended.command_id == command_id => {
                    HoldOutcome::Held(ended.lines.clone())
                }
                // The same answer as the first time, however many units are free now.
                Closed::Refused => HoldOutcome::Refused {
                    available: self.available(),
                },
                how => HoldOutcome::AlreadyClosed(how),
            };
        }
        let needed: Qty = wants.iter().map(|w| w.quantity).sum();
        let available = self.available();
        if wants.iter().any(|w| w.quantity <= 0) || needed > available {
            // Remembered, so no later copy of this HOLD can take units. The saga may send
            // the same HOLD more than once (its step timer re-sends an unanswered one; a
            // checkout that crashed handles its records again), and it fails as soon as it
            // reads this refusal, without releasing the product it was refused. Without
            // the memory a copy arriving after other orders freed units would hold them
            // for a failed order that never ends the hold (found as a leaked hold on the
            // scarce product). With it the race cannot happen, whatever the timing: this
            // ledger is the single writer of the product and handles its commands one at
            // a time, so the first copy it sees decides and every later copy finds the
            // decision. (It is kept as long as every ended hold, `CLOSED_TTL_MS` in the
            // processor, an hour, far beyond the saga's retries; should a copy still come
            // later and hold, the failed saga releases it on reading the HELD answer.)
            self.closed.insert(
                order.to_string(),
                Ended {
                    how: Closed::Refused,
                    command_id: command_id.to_string(),
                    lines: Vec::new(),
                },
            );
            return HoldOutcome::Refused { available };
        }
        let mut left: BTreeMap<String, Qty> = self
            .centers
            .iter()
            .map(|(name, c)| (name.clone(), c.available))
            .collect();
        let mut lines = Vec::new();
        for want in wants {
            let mut order_of_centers: Vec<String> = left.keys().cloned().collect();
            order_of_centers.sort_by(|a, b| left[b].cmp(&left[a]).then(a.cmp(b)));
            if let Some(preferred) = &want.preferred {
                order_of_centers.retain(|c| c != preferred);
                order_of_centers.insert(0, preferred.clone());
            }
            let mut remaining = want.quantity;
            for center in order_of_centers {
                let Some(free) = left.get_mut(&center) else {
                    continue;
                };
                let take = remaining.min(*free);
                if take == 0 {
                    continue;
                }
                *free -= take;
                remaining -= take;
                lines.push(HeldLine {
                    line_number: want.line_number,
                    fulfillment_center: center,
                    quantity: take,
                });
                if remaining == 0 {
                    break;
                }
            }
        }
        for line in &lines {
            let center = self
                .centers
                .entry(line.fulfillment_center.clone())
                .or_default();
            center.available -= line.quantity;
            center.reserved += line.quantity;
        }
        self.holds.insert(
            order.to_string(),
            Hold {
                command_id: command_id.to_string(),
                lines: lines.clone(),
            },
        );
        HoldOutcome::Held(lines)
    }

    /// Drops `order`'s hold: its units become sellable again.
    pub fn release(&mut self, order: &str) -> EndOutcome {
        self.end(order, false)
    }

    /// Sells `order`'s held units.
    pub fn commit(&mut self, order: &str) -> EndOutcome {
        self.end(order, true)
    }

    fn end(&mut self, order: &str, sold: bool) -> EndOutcome {
        let Some(hold) = self.holds.remove(order) else {
            return EndOutcome::NotHeld(self.closed.get(order).map(|e| e.how));
        };
        for line in &hold.lines {
            let center = self
                .centers
                .entry(line.fulfillment_center.clone())
                .or_default();
            center.reserved -= line.quantity;
            if sold {
                center.committed += line.quantity;
            } else {
                center.available += line.quantity;
            }
        }
        let how = if sold {
            Closed::Committed
        } else {
            Closed::Released
        };
        self.closed.insert(
            order.to_string(),
            Ended {
                how,
                command_id: hold.command_id,
                lines: hold.lines.clone(),
            },
        );
        EndOutcome::Ended(hold.lines)
    }

    /// The warehouse reports `on_hand` units in `bucket` at `center` (an absolute level, so
    /// applying the same report twice changes nothing). For the sellable bucket the change
    /// since its last report is applied to `available`; a drop below what is held or sold
    /// takes only unheld units and records the rest as shortfall.
    pub fn set_level(&mut self, center: &str, bucket: Bucket, on_hand: Qty) -> LevelChange {
        let c = self.centers.entry(center.to_string()).or_default();
        let on_hand = on_hand.max(0);
        match bucket {
            Bucket::Available => {
                let delta = on_hand - c.reported_available;
                c.reported_available = on_hand;
                if delta >= 0 {
                    c.available += delta;
                    LevelChange {
                        applied: delta,
                        shortfall: 0,
                    }
                } else {
                    let take = (-delta).min(c.available);
                    c.available -= take;
                    let shortfall = -delta - take;
                    c.shortfall += shortfall;
                    LevelChange {
                        applied: -take,
                        shortfall,
                    }
                }
            }
            Bucket::InTransit => {
                c.in_transit = on_hand;
                LevelChange::default()
            }
            Bucket::Damaged => {
                c.damaged = on_hand;
                LevelChange::default()
            }
            Bucket::PendingReturn => {
                c.pending_return = on_hand;
                LevelChange::default()
            }
        }
    }
}

impl ProductStock {
    /// Returned units arrived at `center`: pending inspection, not sellable.
    pub fn receive_return(&mut self, center: &str, quantity: Qty) {
        self.centers
            .entry(center.to_string())
            .or_default()
            .pending_return += quantity.max(0);
    }

    /// Inspected returned units leave `pending_return` for `available` (restockable) or
    /// `damaged`. Returns the units moved to `available`.
    pub fn inspect_return(&mut self, center: &str, quantity: Qty, restockable: bool) -> Qty {
        let c = self.centers.entry(center.to_string()).or_default();
        let quantity = quantity.max(0);
        c.pending_return = (c.pending_return - quantity).max(0);
        if restockable {
            c.available += quantity;
            quantity
        } else {
            c.damaged += quantity;
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn want(line: i32, quantity: Qty) -> Want {
        Want {
            line_number: line,
            quantity,
            preferred: None,
        }
    }

    fn stocked(levels: &[(&str, Qty)]) -> ProductStock {
        let mut s = ProductStock::default();
        for (center, n) in levels {
            s.set_level(center, Bucket::Available, *n);
        }
        s
    }

    #[test]
    fn a_hold_takes_the_fullest_center_first_and_splits_when_needed() {
        let mut s = stocked(&[("FC-A", 2), ("FC-B", 5)]);
        let HoldOutcome::Held(lines) = s.hold("o1", "c1", &[want(1, 6)]) else {
            panic!()
        };
        assert_eq!(
            lines,
            vec![
                HeldLine {
                    line_number: 1,
                    fulfillment_center: "FC-B".into(),
                    quantity: 5
                },
                HeldLine {
                    line_number: 1,
                    fulfillment_center: "FC-A".into(),
                    quantity: 1
                },
            ]
        );
        assert_eq!(s.available(), 1);
        assert_eq!(
            s.hold("o2", "c2", &[want(1, 2)]),
            HoldOutcome::Refused { available: 1 }
        );
        assert_eq!(s.available(), 1, "a refused hold takes nothing");
    }

    #[test]
    fn a_redelivered_hold_holds_once_and_a_late_one_after_release_holds_nothing() {
        let mut s = stocked(&[("FC-A", 3)]);
        let first = s.hold("o1", "c1", &[want(1, 2)]);
        assert_eq!(s.hold("o1", "c1", &[want(1, 2)]), first);
        assert_eq!(s.available(), 1);
        assert!(matches!(s.release("o1"), EndOutcome::Ended(_)));
        assert_eq!(s.release("o1"), EndOutcome::NotHeld(Some(Closed::Released)));
        assert_eq!(
            s.hold("o1", "c1", &[want(1, 2)]),
            HoldOutcome::AlreadyClosed(Closed::Released)
        );
        assert_eq!(s.available(), 3);
    }

    #[test]
    fn a_hold_sent_again_after_its_commit_gets_the_same_lines_and_takes_nothing() {
        let mut s = stocked(&[("FC-A", 3)]);
        let HoldOutcome::Held(lines) = s.hold("o1", "c1", &[want(1, 2)]) else {
            panic!()
        };
        assert!(matches!(s.commit("o1"), EndOutcome::Ended(_)));
        assert_eq!(s.hold("o1", "c1", &[want(1, 2)]), HoldOutcome::Held(lines));
        assert_eq!(
            s.available(),
            1,
            "the answer is remembered, no unit taken again"
        );
        assert_eq!(s.commit("o1"), EndOutcome::NotHeld(Some(Closed::Committed)));
    }

    /// The race that left holds behind: the saga's step timer re-sends a HOLD while the
    /// ledger's refusal of the first one is still on its way back; by the time the copy
    /// arrives another order has released units. The saga fails on the refusal (nothing to
    /// release), so the copy must not hold anything.
    #[test]
    fn a_hold_sent_again_after_its_refusal_is_refused_even_once_units_are_free() {
        let mut s = stocked(&[("FC-A", 1)]);
        assert!(matches!(
            s.hold("o1", "c1", &[want(1, 1)]),
            HoldOutcome::Held(_)
        ));
        assert_eq!(
            s.hold("o2", "c2", &[want(1, 1)]),
            HoldOutcome::Refused { available: 0 }
        );
        assert!(matches!(s.release("o1"), EndOutcome::Ended(_)));
        assert_eq!(
            s.hold("o2", "c2", &[want(1, 1)]),
            HoldOutcome::Refused { available: 1 },
            "answered as the first time"
        );
        assert!(s.holds.is_empty(), "nothing held for the failed order");
        assert_eq!(s.available(), 1);
        assert_eq!(s.release("o2"), EndOutcome::NotHeld(Some(Closed::Refused)));
    }

    #[test]
    fn a_preferred_center_is_used_first() {
        let mut s = stocked(&[("FC-A", 2), ("FC-B", 5)]);
        let wants = [Want {
            line_number: 1,
            quantity: 2,
            preferred: Some("FC-A".into()),
        }];
        let HoldOutcome::Held(lines) = s.hold("o1", "c1", &wants) else {
            panic!()
        };
        assert_eq!(lines[0].fulfillment_center, "FC-A");
    }

    #[test]
    fn an_adjustment_below_the_held_units_records_a_shortfall() {
        let mut s = stocked(&[("FC-A", 5)]);
        s.hold("o1", "c1", &[want(1, 4)]);
        let change = s.set_level("FC-A", Bucket::Available, 2);
        assert_eq!(
            change,
            LevelChange {
                applied: -1,
                shortfall: 2
            }
        );
        assert_eq!(s.available(), 0);
        assert_eq!(
            s.set_level("FC-A", Bucket::Available, 2),
            LevelChange::default()
        );
    }

    #[derive(Debug, Clone)]
    enum Op {
        Hold(u8, Vec<(u8, Qty)>),
        Release(u8),
        Commit(u8),
        Level(u8, Qty),
        Return(u8, Qty, bool),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..8, prop::collection::vec((0u8..3, 1i64..6), 1..3))
                .prop_map(|(o, l)| Op::Hold(o, l)),
            (0u8..8).prop_map(Op::Release),
            (0u8..8).prop_map(Op::Commit),
            (0u8..3, 0i64..20).prop_map(|(c, n)| Op::Level(c, n)),
            (0u8..3, 1i64..4, any::<bool>()).prop_map(|(c, n, ok)| Op::Return(c, n, ok)),
        ]
    }

    proptest! {
        /// For any sequence of holds (reserve), releases (release and expiry), commits and
        /// warehouse levels (restocks and adjustments): available never goes negative,
        /// reserved equals the holds, and available + reserved + committed moves only by what
        /// the warehouse added or took.
        #[test]
        fn stock_is_conserved_and_never_negative(ops in prop::collection::vec(op(), 1..60)) {
            let mut s = ProductStock::default();
            let mut inflow: Qty = 0;
            for op in ops {
                match op {
                    Op::Hold(o, lines) => {
                        let wants: Vec<Want> = lines
                            .iter()
                            .enumerate()
                            .map(|(i, (pref, q))| Want {
                                line_number: i as i32 + 1,
                                quantity: *q,
                                preferred: (*pref < 2).then(|| format!("FC-{pref}")),
                            })
                            .collect();
                        let before = s.available();
                        let command = format!("{lines:?}");
                        let redelivery = s.holds.get(&format!("o{o}")).is_some_and(|h| h.command_id == command);
                        match s.hold(&format!("o{o}"), &command, &wants) {
                            HoldOutcome::Held(_) if redelivery => prop_assert_eq!(s.available(), before),
                            HoldOutcome::Held(held) => {
                                let total: Qty = held.iter().map(|l| l.quantity).sum();
                                let asked: Qty = wants.iter().map(|w| w.quantity).sum();
                                prop_assert_eq!(total, asked, "all or nothing");
                            }
                            HoldOutcome::Refused { .. } => prop_assert_eq!(s.available(), before),
                            HoldOutcome::AlreadyClosed(_) | HoldOutcome::Conflict { .. } => {
                                prop_assert_eq!(s.available(), before)
                            }
                        }
                    }
                    Op::Release(o) => { s.release(&format!("o{o}")); }
                    Op::Commit(o) => { s.commit(&format!("o{o}")); }
                    Op::Level(c, n) => {
                        inflow += s.set_level(&format!("FC-{c}"), Bucket::Available, n).applied;
                    }
                    Op::Return(c, n, restockable) => {
                        let center = format!("FC-{c}");
                        s.receive_return(&center, n);
                        inflow += s.inspect_return(&center, n, restockable);
                    }
                }
                let mut total = 0;
                for (name, c) in &s.centers {
                    prop_assert!(c.available >= 0, "{} available {}", name, c.available);
                    let held: Qty = s
                        .holds
                        .values()
                        .flat_map(|h| &h.lines)
                        .filter(|l| &l.fulfillment_center == name)
                        .map(|l| l.quantity)
                        .sum();
                    prop_assert_eq!(c.reserved, held);
                    total += c.available + c.reserved + c.committed;
                }
                prop_assert_eq!(total, inflow);
            }
        }
    }
}
