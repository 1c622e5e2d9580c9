//! Checkout: the order saga. [`saga`] is its pure state machine and [`wire`] builds its
//! records from its state (both free of I/O, unit-tested); [`processor`] runs it as a
//! stateful stream join keyed by order id (requests, inventory and payment answers, step
//! timers), turning every step and every compensation into an event; [`orders_db`] is the
//! order history store it writes once the payment is secured.
//!
//! One saga per order id: the storefront's request, the ledgers' answers to its holds,
//! payment's results (all keyed by order id, so co-partitioned) and one durable step timer per
//! order meet in one [`SagaRecord`] per order.
//!
//! ```text
//! RESERVING_INVENTORY ─every product HELD─▶ AUTHORIZING_PAYMENT ─charged─▶ PLACED: order row, COMMIT per product, orders.order-placed.v1
//!       │ a product REFUSED / NOT_HELD,       │ declined / failed / timed out
//!       │ or timed out                        ▼
//!       │                         REFUNDING_PAYMENT (only if it may have charged; answered)
//!       ▼                                     ▼
//!  RELEASING_INVENTORY (RELEASE per product asked or held, no answer; skipped if none) ─▶ FAILED
//!    forward steps: timer, 3 attempts (timeout doubling per attempt, at most 8×), then compensated;
//!    a refund unanswered after 5 attempts ─▶ STUCK (metric, `fleet orders stuck`); its late answer resumes it
//! ```
//!
//! - **All or nothing.** One HOLD per product to its ledger (`inventory.stock-commands.v1`,
//!   key product id); each product's [`saga::Stock`] goes Asked → Held or Refused → Committed
//!   or Released. The charge (one AUTHORIZE with capture: one gateway call, under the
//!   payment's key `pay-<order>`) starts once every product is held; the first refusal
//!   releases every product asked or held (the ledger reads a RELEASE after the HOLD sent
//!   before it, so an unanswered hold is given back too). A hold timeout asks again only the
//!   unanswered products. A failed saga that still reads a late HELD releases it.
//! - **Placed in one step**: the order row, a COMMIT per product and `orders.order-placed.v1`
//!   (each line's fulfillment center from the HELD answers). The `orders` database holds
//!   placed orders only: the instance's one writer task upserts what is queued (up to 500
//!   rows) in one multi-row statement and transaction, keyed by order id, so a record handled
//!   again or a former owner's late write writes the same row. The runtime awaits the row
//!   (`Outputs::defer`) before the record commits (the events do not wait for it); a write
//!   failing for about a minute stops the processor, whose restart handles the record again.
//! - **Compensation**: the refund (answered, retried on the step timer), then RELEASE
//!   commands (no answer: only the saga ends its holds). Only a refund that cannot complete
//!   leaves a saga STUCK.
//! - **Transitions.** Every transition is a `checkout.saga-transitions.v1` record carrying the
//!   order's status (PROCESSING, PLACED, COMPENSATING, FAILED, STUCK), user, currency, total
//!   and times: the storefront projects it and `fleet orders stuck` reads it; `fleet orders
//!   status <id>` asks the owning instance's store (`GET /state/{key}`). Dead letters:
//!   `dlq.checkout.{checkout-requested,stock-results,payment-results}.v1`.
//! - **Idempotent start.** The same request again (same key, same cart) changes nothing; the
//!   same order id with another key or cart is refused to the dead-letter topic as a key
//!   conflict; a request that cannot be a saga (no lines, amounts that do not add up) gets
//!   one FAILED transition. The storefront derives the order id from the client's idempotency
//!   key, so one key is one saga. A timer forgets an ended saga `retain_ms` (24 h) later.
//!
//! Limits: a saga forgotten after `retain_ms` (as long as the storefront's idempotency
//! records) is started anew by a later request for the same order. A STUCK saga (its holds
//! still held) resumes when its refund's answer finally arrives; an operator command to
//! redrive a STUCK saga whose participants lost the command is not built (the saga has the
//! transition, `Saga::redrive`; no input carries it yet).

pub mod orders_db;
pub mod processor;
pub mod saga;
pub mod wire;

pub use processor::{Checkout, SagaRecord, Topics};
