//! `storefleet.orders` / `storefleet.checkout`: the checkout saga's input from the storefront
//! and its transitions (the audit log and the order status the storefront shows).

use serde::{Deserialize, Serialize};

use crate::payments::PaymentMethod;
use crate::{Address, ShippingSpeed};

/// schemas/orders/CheckoutRequested.avsc — the storefront asks to place an order from a
/// cart; starts the checkout saga.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckoutRequested {
    pub event_id: String,
    pub occurred_at: i64,
    /// The order id.
    pub correlation_id: String,
    pub causation_id: Option<String>,
    /// Checkout starts at most one saga per key, so a double-clicked "Place order" is one
    /// order.
    pub idempotency_key: String,
    pub order_id: String,
    pub user_id: String,
    pub cart_id: Option<String>,
    /// At least one (the schema's doc; Avro itself allows an empty array).
    pub lines: Vec<CheckoutLine>,
    pub currency: String,
    pub subtotal_minor: i64,
    /// Schema default 0.
    pub shipping_fee_minor: i64,
    /// Schema default 0.
    pub tax_minor: i64,
    /// subtotal + shipping fee + tax.
    pub total_minor: i64,
    pub shipping_address: Address,
    /// Schema default STANDARD.
    pub shipping_speed: ShippingSpeed,
    /// Required here, unlike in `PaymentCommand`.
    pub payment_method: PaymentMethod,
}

/// One ordered product (schemas/orders/CheckoutRequested.avsc `CheckoutLine`); inventory has
/// not chosen a fulfillment center yet, so there is none here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckoutLine {
    pub line_number: i32,
    pub product_id: String,
    pub sku: String,
    pub quantity: i32,
    pub unit_price_minor: i64,
}

/// The customer-level status (schemas/checkout/SagaTransition.avsc `status`); [`SagaState`]
/// is the exact one behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatusCode {
    Unknown,
    Processing,
    Placed,
    /// Failed; undoing the reservation and/or payment.
    Compensating,
    /// Failed and fully compensated.
    Failed,
    /// Needs an operator.
    Stuck,
}

/// State of the checkout saga (schemas/checkout/SagaTransition.avsc). PLACED and FAILED are terminal; VOIDING_PAYMENT,
/// REFUNDING_PAYMENT and RELEASING_INVENTORY compensate; STUCK waits for an operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SagaState {
    Unknown,
    Started,
    ReservingInventory,
    AuthorizingPayment,
    CreatingOrder,
    CommittingInventory,
    Placed,
    VoidingPayment,
    RefundingPayment,
    ReleasingInventory,
    Failed,
    Stuck,
}

/// Why a checkout failed or is stuck, in terms a customer-facing system can map to a message
/// (schemas/checkout/SagaTransition.avsc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FailureCode {
    Unknown,
    OutOfStock,
    UnknownProduct,
    InvalidQuantity,
    DuplicateLine,
    ReservationExpired,
    PaymentDeclined,
    PaymentFailed,
    OrderCreationFailed,
    StepTimedOut,
    InvalidRequest,
    CompensationFailed,
    InternalError,
}

/// schemas/checkout/SagaTransition.avsc — one state change of a checkout saga: the audit log
/// and the order status the storefront projects (the newest `sequence` per order wins).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SagaTransition {
    pub event_id: String,
    pub occurred_at: i64,
    pub correlation_id: String,
    /// The `event_id` of the message (or timer) that triggered the transition.
    pub causation_id: Option<String>,
    pub order_id: String,
    /// 1-based within the saga; increases by one, no gaps.
    pub sequence: i64,
    /// `None` for the first transition.
    pub from_state: Option<SagaState>,
    pub to_state: SagaState,
    pub trigger: SagaTrigger,
    /// True once the saga is undoing earlier steps; stays true until terminal.
    pub compensating: bool,
    /// Attempt number of the step entered (schema default 1).
    pub attempt: i32,
    /// When the step entered times out; `None` for terminal states.
    pub step_deadline: Option<i64>,
    pub failure_code: Option<FailureCode>,
    /// Detail of the failure or operator action.
    pub reason: Option<String>,
    /// The customer-level status after this transition.
    #[serde(default)]
    pub status: Option<OrderStatusCode>,
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub total_minor: Option<i64>,
    #[serde(default)]
    pub created_at: Option<i64>,
    /// `None` until PLACED.
    #[serde(default)]
    pub placed_at: Option<i64>,
}

/// What caused a saga transition (schemas/checkout/SagaTransition.avsc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SagaTrigger {
    Unknown,
    CheckoutRequested,
    InventoryReserved,
    InventoryRejected,
    InventoryCommitted,
    InventoryCommitRejected,
    InventoryReleased,
    PaymentAuthorized,
    PaymentCaptured,
    PaymentDeclined,
    PaymentFailed,
    PaymentVoided,
    PaymentRefunded,
    OrderCreated,
    OrderCreationFailed,
    StepTimedOut,
    Operator,
}

/// One value of each top-level record with every optional field set and every list
/// non-empty.
#[cfg(test)]
pub(crate) mod samples {
    use super::*;
    use crate::payments::PaymentMethodType;

    const ORDER: &str = "7c1e4b2a-5d3f-4a6b-8c9d-0e1f2a3b4c5d";

    pub fn checkout_requested() -> CheckoutRequested {
        CheckoutRequested {
            event_id: "1c2e4b2a-5d3f-4a6b-8c9d-0e1f2a3b4c5d".into(),
            occurred_at: 1_764_300_000_000,
            correlation_id: ORDER.into(),
            causation_id: Some("req-42".into()),
            idempotency_key: "cart-9:v3".into(),
            order_id: ORDER.into(),
            user_id: "user-7".into(),
            cart_id: Some("cart-9".into()),
            lines: vec![
                CheckoutLine {
                    line_number: 1,
                    product_id: "6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b".into(),
                    sku: "SKU-1".into(),
                    quantity: 2,
                    unit_price_minor: 1999,
                },
                CheckoutLine {
                    line_number: 2,
                    product_id: "7f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b".into(),
                    sku: "SKU-2".into(),
                    quantity: 1,
                    unit_price_minor: 500,
                },
            ],
            currency: "USD".into(),
            subtotal_minor: 4498,
            shipping_fee_minor: 799,
            tax_minor: 360,
            total_minor: 5657,
            shipping_address: Address {
                recipient_name: "Ada".into(),
                line1: "1 Loop Rd".into(),
                line2: Some("Apt 3".into()),
                city: "Springfield".into(),
                region: Some("IL".into()),
                postal_code: "62701".into(),
                country_code: "US".into(),
                phone: Some("+12175550100".into()),
            },
            shipping_speed: ShippingSpeed::Expedited,
            payment_method: PaymentMethod {
                kind: PaymentMethodType::Card,
                token: "tok_visa".into(),
                last4: Some("4242".into()),
            },
        }
    }

    pub fn saga_transition() -> SagaTransition {
        SagaTransition {
            event_id: "3c2e4b2a-5d3f-4a6b-8c9d-0e1f2a3b4c5d".into(),
            occurred_at: 1_764_300_059_000,
            correlation_id: ORDER.into(),
            causation_id: Some("4c2e4b2a-5d3f-4a6b-8c9d-0e1f2a3b4c5d".into()),
            order_id: ORDER.into(),
            sequence: 7,
            from_state: Some(SagaState::RefundingPayment),
            to_state: SagaState::Stuck,
            trigger: SagaTrigger::StepTimedOut,
            compensating: true,
            attempt: 3,
            step_deadline: Some(1_764_300_119_000),
            failure_code: Some(FailureCode::CompensationFailed),
            reason: Some("refund timed out three times".into()),
            status: Some(OrderStatusCode::Stuck),
            user_id: Some("user-7".into()),
            currency: Some("USD".into()),
            total_minor: Some(5657),
            created_at: Some(1_764_300_000_000),
            placed_at: Some(1_764_300_010_000),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::samples;
    use super::*;
    use crate::payments::PaymentMethodType;
    use crate::schema_check::round_trip;
    use codec::Schema;

    // Each record is checked full (samples), empty (every union null) and once per enum
    // symbol, so a symbol renamed on either side fails here (an unknown name resolves to the
    // schema's UNKNOWN default and comes back different). `every_symbol_is_covered` then
    // checks each list below has as many variants as the schema has symbols, so a symbol
    // added to the schema alone fails too.

    const STATUS_CODES: [OrderStatusCode; 6] = [
        OrderStatusCode::Unknown,
        OrderStatusCode::Processing,
        OrderStatusCode::Placed,
        OrderStatusCode::Compensating,
        OrderStatusCode::Failed,
        OrderStatusCode::Stuck,
    ];

    const SAGA_STATES: [SagaState; 12] = [
        SagaState::Unknown,
        SagaState::Started,
        SagaState::ReservingInventory,
        SagaState::AuthorizingPayment,
        SagaState::CreatingOrder,
        SagaState::CommittingInventory,
        SagaState::Placed,
        SagaState::VoidingPayment,
        SagaState::RefundingPayment,
        SagaState::ReleasingInventory,
        SagaState::Failed,
        SagaState::Stuck,
    ];

    const FAILURE_CODES: [FailureCode; 13] = [
        FailureCode::Unknown,
        FailureCode::OutOfStock,
        FailureCode::UnknownProduct,
        FailureCode::InvalidQuantity,
        FailureCode::DuplicateLine,
        FailureCode::ReservationExpired,
        FailureCode::PaymentDeclined,
        FailureCode::PaymentFailed,
        FailureCode::OrderCreationFailed,
        FailureCode::StepTimedOut,
        FailureCode::InvalidRequest,
        FailureCode::CompensationFailed,
        FailureCode::InternalError,
    ];

    const TRIGGERS: [SagaTrigger; 17] = [
        SagaTrigger::Unknown,
        SagaTrigger::CheckoutRequested,
        SagaTrigger::InventoryReserved,
        SagaTrigger::InventoryRejected,
        SagaTrigger::InventoryCommitted,
        SagaTrigger::InventoryCommitRejected,
        SagaTrigger::InventoryReleased,
        SagaTrigger::PaymentAuthorized,
        SagaTrigger::PaymentCaptured,
        SagaTrigger::PaymentDeclined,
        SagaTrigger::PaymentFailed,
        SagaTrigger::PaymentVoided,
        SagaTrigger::PaymentRefunded,
        SagaTrigger::OrderCreated,
        SagaTrigger::OrderCreationFailed,
        SagaTrigger::StepTimedOut,
        SagaTrigger::Operator,
    ];

    const SHIPPING_SPEEDS: [ShippingSpeed; 4] = [
        ShippingSpeed::Unknown,
        ShippingSpeed::Standard,
        ShippingSpeed::Expedited,
        ShippingSpeed::NextDay,
    ];

    const PAYMENT_METHOD_TYPES: [PaymentMethodType; 5] = [
        PaymentMethodType::Unknown,
        PaymentMethodType::Card,
        PaymentMethodType::Wallet,
        PaymentMethodType::BankTransfer,
        PaymentMethodType::GiftCard,
    ];

    #[test]
    fn checkout_requested_matches_its_schema() {
        const FILE: &str = "orders/CheckoutRequested.avsc";
        let full = samples::checkout_requested();
        round_trip(FILE, &full);
        // `lines` stays non-empty: the schema's doc requires at least one.
        let empty = CheckoutRequested {
            causation_id: None,
            cart_id: None,
            lines: full.lines[..1].to_vec(),
            shipping_fee_minor: 0,
            tax_minor: 0,
            shipping_address: Address {
                line2: None,
                region: None,
                phone: None,
                ..full.shipping_address.clone()
            },
            payment_method: PaymentMethod {
                last4: None,
                ..full.payment_method.clone()
            },
            ..full.clone()
        };
        round_trip(FILE, &empty);
        for shipping_speed in SHIPPING_SPEEDS {
            round_trip(
                FILE,
                &CheckoutRequested {
                    shipping_speed,
                    ..empty.clone()
                },
            );
        }
        for kind in PAYMENT_METHOD_TYPES {
            let payment_method = PaymentMethod {
                kind,
                ..empty.payment_method.clone()
            };
            round_trip(
                FILE,
                &CheckoutRequested {
                    payment_method,
                    ..empty.clone()
                },
            );
        }
    }

    #[test]
    fn saga_transition_matches_its_schema() {
        const FILE: &str = "checkout/SagaTransition.avsc";
        let full = samples::saga_transition();
        round_trip(FILE, &full);
        let empty = SagaTransition {
            causation_id: None,
            sequence: 1,
            from_state: None,
            to_state: SagaState::Started,
            trigger: SagaTrigger::CheckoutRequested,
            compensating: false,
            attempt: 1,
            step_deadline: None,
            failure_code: None,
            reason: None,
            status: None,
            user_id: None,
            currency: None,
            total_minor: None,
            created_at: None,
            placed_at: None,
            ..full.clone()
        };
        round_trip(FILE, &empty);
        for status in STATUS_CODES {
            round_trip(
                FILE,
                &SagaTransition {
                    status: Some(status),
                    ..empty.clone()
                },
            );
        }
        for state in SAGA_STATES {
            // `to_state` refers to the enum declared inside the `from_state` union.
            round_trip(
                FILE,
                &SagaTransition {
                    from_state: Some(state),
                    ..empty.clone()
                },
            );
            round_trip(
                FILE,
                &SagaTransition {
                    to_state: state,
                    ..empty.clone()
                },
            );
        }
        for trigger in TRIGGERS {
            round_trip(
                FILE,
                &SagaTransition {
                    trigger,
                    ..empty.clone()
                },
            );
        }
        for code in FAILURE_CODES {
            round_trip(
                FILE,
                &SagaTransition {
                    failure_code: Some(code),
                    ..empty.clone()
                },
            );
        }
    }

    #[test]
    fn every_symbol_is_covered() {
        for (file, name, variants) in [
            (
                "orders/CheckoutRequested.avsc",
                "ShippingSpeed",
                SHIPPING_SPEEDS.len(),
            ),
            (
                "orders/CheckoutRequested.avsc",
                "PaymentMethodType",
                PAYMENT_METHOD_TYPES.len(),
            ),
            (
                "checkout/SagaTransition.avsc",
                "OrderStatusCode",
                STATUS_CODES.len(),
            ),
            (
                "checkout/SagaTransition.avsc",
                "SagaState",
                SAGA_STATES.len(),
            ),
            (
                "checkout/SagaTransition.avsc",
                "SagaTrigger",
                TRIGGERS.len(),
            ),
            (
                "checkout/SagaTransition.avsc",
                "FailureCode",
                FAILURE_CODES.len(),
            ),
        ] {
            let symbols = enum_symbols(file, name);
            assert_eq!(symbols.len(), variants, "{file} {name}: {symbols:?}");
        }
    }

    /// The symbols of the enum called `name` declared in `schema_file`.
    fn enum_symbols(schema_file: &str, name: &str) -> Vec<String> {
        let path = format!("{}/../../schemas/{schema_file}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).expect("schema file");
        let schema = Schema::parse_str(&text).expect("schema parses");
        find_enum(&schema, name).unwrap_or_else(|| panic!("{schema_file} declares no {name}"))
    }

    fn find_enum(schema: &Schema, name: &str) -> Option<Vec<String>> {
        match schema {
            Schema::Enum(e) if e.name.name() == name => Some(e.symbols.clone()),
            Schema::Record(r) => r.fields.iter().find_map(|f| find_enum(&f.schema, name)),
            Schema::Union(u) => u.variants().iter().find_map(|v| find_enum(v, name)),
            Schema::Array(a) => find_enum(&a.items, name),
            _ => None,
        }
    }
}
