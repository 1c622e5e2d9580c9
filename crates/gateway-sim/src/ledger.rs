//! The gateway's books: one payment per idempotency key, and the money that really moved.
//! Pure: no I/O, no clock, no randomness (a decline is a hash of the key).
//!
//! Invariants (property-tested below), whatever the sequence of calls: a payment's
//! `captured_cents` is 0 or its amount and is set at most once; `refunded_cents` is 0 or
//! `captured_cents` and is set at most once; a key voided before any authorize (a fence)
//! never captures anything. Every call on a known key is counted, answered or refused.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Money in the smallest unit of its currency.
pub type Cents = i64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Authorized,
    Captured,
    Declined,
    Voided,
    Refunded,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Authorized => "authorized",
            Status::Captured => "captured",
            Status::Declined => "declined",
            Status::Voided => "voided",
            Status::Refunded => "refunded",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeclineReason {
    /// The issuer said no (the key fell under `decline_rate`).
    CardDeclined,
    /// `amount_cents <= 0`.
    InvalidAmount,
}

/// One payment, as every endpoint answers it and as the ledger audits it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    /// The idempotency key.
    pub key: String,
    pub status: Status,
    /// As first authorized; 0 for a fence.
    pub amount_cents: Cents,
    /// As first authorized; empty for a fence.
    pub currency: String,
    /// The gateway's own reference, unique per payment.
    pub gateway_ref: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decline_reason: Option<DeclineReason>,
    /// Voided before it was ever authorized: later authorizes charge nothing.
    pub fenced: bool,
    /// Money captured: 0 or `amount_cents`.
    pub captured_cents: Cents,
    /// Money refunded: 0 or `captured_cents`.
    pub refunded_cents: Cents,
    pub authorize_calls: u64,
    pub capture_calls: u64,
    pub void_calls: u64,
    pub refund_calls: u64,
}

/// What the gateway really charged, over every payment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub captured_cents: Cents,
    pub refunded_cents: Cents,
    /// `captured_cents - refunded_cents`.
    pub net_cents: Cents,
    /// Entries of any status, fences and declines included.
    pub payments: u64,
}

/// The ledger as `GET /v1/ledger` answers it: payments sorted by key, and their totals.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Audit {
    pub payments: Vec<Payment>,
    pub totals: Totals,
}

/// A mutating call on one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// With `capture`, a sale: authorized and captured in the one call (as a card processor's
    /// automatic capture); a repeat captures a payment left authorized.
    Authorize {
        amount_cents: Cents,
        currency: String,
        capture: bool,
    },
    Capture,
    Void,
    Refund,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LedgerError {
    #[error("no payment with key `{key}`")]
    NotFound { key: String },
    #[error(
        "payment `{key}` was authorized for {existing_amount} {existing_currency}, \
         not {requested_amount} {requested_currency}"
    )]
    AmountMismatch {
        key: String,
        existing_amount: Cents,
        existing_currency: String,
        requested_amount: Cents,
        requested_currency: String,
    },
    #[error("cannot {operation} payment `{key}`: it is {status} ({hint})")]
    InvalidTransition {
        key: String,
        operation: &'static str,
        status: Status,
        hint: &'static str,
    },
}

#[derive(Debug, Default)]
pub struct Ledger {
    payments: BTreeMap<String, Payment>,
    /// Payments ever created, for `gateway_ref`.
    created: u64,
}

impl Ledger {
    pub fn apply(
        &mut self,
        key: &str,
        command: &Command,
        decline_rate: f64,
    ) -> Result<Payment, LedgerError> {
        match command {
            Command::Authorize {
                amount_cents,
                currency,
                capture,
            } => {
                let payment = self.authorize(key, *amount_cents, currency, decline_rate)?;
                if *capture && payment.status == Status::Authorized && !payment.fenced {
                    self.capture(key)
                } else {
                    Ok(payment)
                }
            }
            Command::Capture => self.capture(key),
            Command::Void => self.void(key),
            Command::Refund => self.refund(key),
        }
    }

    /// Creates the payment, authorized or declined; a repeat returns it as it is now, unless
    /// it names another amount or currency. A fence answers voided and charges nothing.
    pub fn authorize(
        &mut self,
        key: &str,
        amount_cents: Cents,
        currency: &str,
        decline_rate: f64,
    ) -> Result<Payment, LedgerError> {
        if let Some(payment) = self.payments.get_mut(key) {
            payment.authorize_calls += 1;
            let same = payment.amount_cents == amount_cents && payment.currency == currency;
            if payment.fenced || same {
                return Ok(payment.clone());
            }
            return Err(LedgerError::AmountMismatch {
                key: key.to_string(),
                existing_amount: payment.amount_cents,
                existing_currency: payment.currency.clone(),
                requested_amount: amount_cents,
                requested_currency: currency.to_string(),
            });
        }
        let decline_reason = if amount_cents <= 0 {
            Some(DeclineReason::InvalidAmount)
        } else if issuer_declines(key, decline_rate) {
            Some(DeclineReason::CardDeclined)
        } else {
            None
        };
        let status = match decline_reason {
            Some(_) => Status::Declined,
            None => Status::Authorized,
        };
        let mut payment = self.create(key, status, amount_cents, currency);
        payment.decline_reason = decline_reason;
        payment.authorize_calls = 1;
        Ok(self.insert(payment))
    }

    /// Authorized → captured (the money moves, once). Idempotent on captured.
    pub fn capture(&mut self, key: &str) -> Result<Payment, LedgerError> {
        let payment = self.known(key)?;
        payment.capture_calls += 1;
        let hint = match payment.status {
            Status::Authorized => {
                payment.status = Status::Captured;
                payment.captured_cents = payment.amount_cents;
                return Ok(payment.clone());
            }
            Status::Captured => return Ok(payment.clone()),
            Status::Declined => "the authorization was declined",
            Status::Voided => "the authorization was voided",
            Status::Refunded => "it was captured and refunded already",
        };
        Err(transition(payment, "capture", hint))
    }

    /// Authorized → voided; an unknown key becomes a fence. Idempotent on voided; a declined
    /// payment is answered unchanged (nothing to void).
    pub fn void(&mut self, key: &str) -> Result<Payment, LedgerError> {
        let Some(payment) = self.payments.get_mut(key) else {
            let mut fence = self.create(key, Status::Voided, 0, "");
            fence.fenced = true;
            fence.void_calls = 1;
            return Ok(self.insert(fence));
        };
        payment.void_calls += 1;
        let hint = match payment.status {
            Status::Authorized => {
                payment.status = Status::Voided;
                return Ok(payment.clone());
            }
            Status::Voided | Status::Declined => return Ok(payment.clone()),
            Status::Captured => "captured payments must be refunded",
            Status::Refunded => "it was refunded already",
        };
        Err(transition(payment, "void", hint))
    }

    /// Captured → refunded (the full amount, once). Idempotent on refunded.
    pub fn refund(&mut self, key: &str) -> Result<Payment, LedgerError> {
        let payment = self.known(key)?;
        payment.refund_calls += 1;
        let hint = match payment.status {
            Status::Captured => {
                payment.status = Status::Refunded;
                payment.refunded_cents = payment.captured_cents;
                return Ok(payment.clone());
            }
            Status::Refunded => return Ok(payment.clone()),
            Status::Authorized => "it was never captured: void it instead",
            Status::Declined | Status::Voided => "nothing was captured",
        };
        Err(transition(payment, "refund", hint))
    }

    pub fn get(&self, key: &str) -> Option<&Payment> {
        self.payments.get(key)
    }

    pub fn totals(&self) -> Totals {
        let mut totals = Totals::default();
        for payment in self.payments.values() {
            // Saturating: absurd amounts must not crash the simulator.
            totals.captured_cents = totals.captured_cents.saturating_add(payment.captured_cents);
            totals.refunded_cents = totals.refunded_cents.saturating_add(payment.refunded_cents);
            totals.payments += 1;
        }
        totals.net_cents = totals.captured_cents.saturating_sub(totals.refunded_cents);
        totals
    }

    pub fn audit(&self) -> Audit {
        Audit {
            payments: self.payments.values().cloned().collect(),
            totals: self.totals(),
        }
    }

    fn known(&mut self, key: &str) -> Result<&mut Payment, LedgerError> {
        self.payments
            .get_mut(key)
            .ok_or_else(|| LedgerError::NotFound {
                key: key.to_string(),
            })
    }

    fn create(
        &mut self,
        key: &str,
        status: Status,
        amount_cents: Cents,
        currency: &str,
    ) -> Payment {
        self.created += 1;
        Payment {
            key: key.to_string(),
            status,
            amount_cents,
            currency: currency.to_string(),
            gateway_ref: format!("gw_{:010}", self.created),
            decline_reason: None,
            fenced: false,
            captured_cents: 0,
            refunded_cents: 0,
            authorize_calls: 0,
            capture_calls: 0,
            void_calls: 0,
            refund_calls: 0,
        }
    }

    fn insert(&mut self, payment: Payment) -> Payment {
        self.payments.insert(payment.key.clone(), payment.clone());
        payment
    }
}

fn transition(payment: &Payment, operation: &'static str, hint: &'static str) -> LedgerError {
    LedgerError::InvalidTransition {
        key: payment.key.clone(),
        operation,
        status: payment.status,
        hint,
    }
}

/// The issuer's verdict: `fnv1a(key) mod 10_000 < decline_rate * 10_000`. FNV-1a rather than
/// std's hasher, whose output may change between Rust releases.
pub fn issuer_declines(key: &str, decline_rate: f64) -> bool {
    const BUCKETS: u64 = 10_000;
    let threshold = (decline_rate.clamp(0.0, 1.0) * BUCKETS as f64).round() as u64;
    fnv1a(key.as_bytes()) % BUCKETS < threshold
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
#[path = "ledger_tests.rs"]
mod tests;
