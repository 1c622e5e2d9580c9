//! `storefleet.payments`: the saga's commands to the payment processor, its results, and the
//! processor's own retry records.

use serde::{Deserialize, Serialize};

/// schemas/payments/PaymentCommand.avsc — checkout asks payment to move money.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentCommand {
    pub event_id: String,
    pub occurred_at: i64,
    pub correlation_id: String,
    pub causation_id: Option<String>,
    /// Stays the same across re-sends and retries.
    pub command_id: String,
    pub idempotency_key: String,
    pub kind: PaymentCommandKind,
    pub order_id: String,
    /// The payment (one per order authorization): the gateway's idempotency key for it.
    pub payment_id: String,
    pub amount_minor: i64,
    pub currency: String,
    pub payment_method: Option<PaymentMethod>,
    pub capture_immediately: bool,
    pub gateway_reference: Option<String>,
    pub reason: Option<String>,
    /// After it, payment stops retrying and answers FAILED / TIMEOUT.
    pub deadline: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PaymentCommandKind {
    Unknown,
    Authorize,
    Capture,
    Refund,
    Void,
}

impl PaymentCommandKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentCommandKind::Unknown => "unknown",
            PaymentCommandKind::Authorize => "authorize",
            PaymentCommandKind::Capture => "capture",
            PaymentCommandKind::Refund => "refund",
            PaymentCommandKind::Void => "void",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentMethod {
    pub kind: PaymentMethodType,
    pub token: String,
    pub last4: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PaymentMethodType {
    Unknown,
    Card,
    Wallet,
    BankTransfer,
    GiftCard,
}

/// schemas/payments/PaymentResult.avsc — the outcome of one command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentResult {
    pub event_id: String,
    pub occurred_at: i64,
    pub correlation_id: String,
    pub causation_id: Option<String>,
    pub kind: PaymentResultKind,
    pub command_id: String,
    pub command_kind: PaymentCommandKind,
    pub idempotency_key: String,
    pub order_id: String,
    pub payment_id: String,
    pub amount_minor: i64,
    pub currency: String,
    pub gateway_reference: Option<String>,
    pub attempts: i32,
    pub decline_code: Option<String>,
    pub error_kind: Option<PaymentErrorKind>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PaymentResultKind {
    Unknown,
    Authorized,
    Captured,
    Declined,
    Refunded,
    Voided,
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PaymentErrorKind {
    Unknown,
    Timeout,
    GatewayUnavailable,
    RateLimited,
    GatewayError,
    InvalidCommand,
}

impl PaymentErrorKind {
    /// Whether another attempt may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            PaymentErrorKind::Timeout
                | PaymentErrorKind::GatewayUnavailable
                | PaymentErrorKind::RateLimited
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PaymentErrorKind::Unknown => "unknown",
            PaymentErrorKind::Timeout => "timeout",
            PaymentErrorKind::GatewayUnavailable => "gateway_unavailable",
            PaymentErrorKind::RateLimited => "rate_limited",
            PaymentErrorKind::GatewayError => "gateway_error",
            PaymentErrorKind::InvalidCommand => "invalid_command",
        }
    }
}

/// schemas/payments/PaymentRetry.avsc — a command waiting for its next attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRetry {
    pub event_id: String,
    pub occurred_at: i64,
    pub correlation_id: String,
    pub causation_id: Option<String>,
    pub command: PaymentCommand,
    /// The attempt to make next (2 for the first retry).
    pub attempt: i32,
    pub not_before: i64,
    pub first_attempted_at: i64,
    pub last_error_kind: PaymentErrorKind,
    pub last_error: String,
}

#[cfg(test)]
pub(crate) mod samples {
    use super::*;

    pub fn command() -> PaymentCommand {
        PaymentCommand {
            event_id: "9b2f1c3e-0000-4000-8000-000000000001".into(),
            occurred_at: 1_764_000_000_000,
            correlation_id: "order-1".into(),
            causation_id: Some("9b2f1c3e-0000-4000-8000-000000000000".into()),
            command_id: "9b2f1c3e-0000-4000-8000-00000000000c".into(),
            idempotency_key: "order-1:authorize".into(),
            kind: PaymentCommandKind::Authorize,
            order_id: "order-1".into(),
            payment_id: "pay-order-1".into(),
            amount_minor: 12_345,
            currency: "USD".into(),
            payment_method: Some(PaymentMethod {
                kind: PaymentMethodType::Card,
                token: "tok_visa".into(),
                last4: Some("4242".into()),
            }),
            capture_immediately: true,
            gateway_reference: Some("gw-1".into()),
            reason: Some("because".into()),
            deadline: Some(1_764_000_060_000),
        }
    }

    pub fn result() -> PaymentResult {
        PaymentResult {
            event_id: "9b2f1c3e-0000-4000-8000-000000000002".into(),
            occurred_at: 1_764_000_000_100,
            correlation_id: "order-1".into(),
            causation_id: Some("9b2f1c3e-0000-4000-8000-000000000001".into()),
            kind: PaymentResultKind::Captured,
            command_id: "9b2f1c3e-0000-4000-8000-00000000000c".into(),
            command_kind: PaymentCommandKind::Authorize,
            idempotency_key: "order-1:authorize".into(),
            order_id: "order-1".into(),
            payment_id: "pay-order-1".into(),
            amount_minor: 12_345,
            currency: "USD".into(),
            gateway_reference: Some("gw-1".into()),
            attempts: 2,
            decline_code: Some("insufficient_funds".into()),
            error_kind: Some(PaymentErrorKind::Timeout),
            error: Some("timed out".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema_check::round_trip;

    #[test]
    fn payment_command_matches_its_schema() {
        const FILE: &str = "payments/PaymentCommand.avsc";
        let full = samples::command();
        round_trip(FILE, &full);
        for kind in [
            PaymentCommandKind::Unknown,
            PaymentCommandKind::Capture,
            PaymentCommandKind::Refund,
            PaymentCommandKind::Void,
        ] {
            round_trip(
                FILE,
                &PaymentCommand {
                    kind,
                    causation_id: None,
                    payment_method: None,
                    gateway_reference: None,
                    reason: None,
                    deadline: None,
                    ..full.clone()
                },
            );
        }
        for kind in [
            PaymentMethodType::Unknown,
            PaymentMethodType::Wallet,
            PaymentMethodType::BankTransfer,
            PaymentMethodType::GiftCard,
        ] {
            let mut c = full.clone();
            c.payment_method = Some(PaymentMethod {
                kind,
                token: "t".into(),
                last4: None,
            });
            round_trip(FILE, &c);
        }
    }

    #[test]
    fn payment_result_matches_its_schema() {
        const FILE: &str = "payments/PaymentResult.avsc";
        let full = samples::result();
        round_trip(FILE, &full);
        for kind in [
            PaymentResultKind::Unknown,
            PaymentResultKind::Authorized,
            PaymentResultKind::Declined,
            PaymentResultKind::Refunded,
            PaymentResultKind::Voided,
            PaymentResultKind::Failed,
        ] {
            round_trip(
                FILE,
                &PaymentResult {
                    kind,
                    causation_id: None,
                    gateway_reference: None,
                    decline_code: None,
                    error_kind: None,
                    error: None,
                    ..full.clone()
                },
            );
        }
        for e in [
            PaymentErrorKind::Unknown,
            PaymentErrorKind::GatewayUnavailable,
            PaymentErrorKind::RateLimited,
            PaymentErrorKind::GatewayError,
            PaymentErrorKind::InvalidCommand,
        ] {
            let mut r = full.clone();
            r.error_kind = Some(e);
            round_trip(FILE, &r);
        }
    }

    #[test]
    fn payment_retry_matches_its_schema() {
        round_trip(
            "payments/PaymentRetry.avsc",
            &PaymentRetry {
                event_id: "9b2f1c3e-0000-4000-8000-000000000003".into(),
                occurred_at: 1,
                correlation_id: "order-1".into(),
                causation_id: None,
                command: samples::command(),
                attempt: 2,
                not_before: 5,
                first_attempted_at: 1,
                last_error_kind: PaymentErrorKind::Timeout,
                last_error: "timed out".into(),
            },
        );
    }
}
