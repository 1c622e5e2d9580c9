//! Payment: moves money through an external card gateway so that a slow, failing gateway
//! is invisible to correctness ("one duplicate charge can cost millions"). [`plan`] (pure)
//! decides each next step from the payment's state; [`breaker`] (pure) protects the gateway;
//! [`gateway`] is its HTTP API; [`store`] is the service's transaction log in PostgreSQL;
//! [`processor`] ties them to the topics. One kind, two processors in the topology:
//! `payment` (group `storefleet.payment`, the saga's `payments.commands.v1`) and
//! `payment-retry` (group `storefleet.payment-retry`, its own `payments.retries.v1`).
//!
//! - **Idempotency at the source.** The gateway key of a payment is its `payment_id` (one per
//!   order, chosen by checkout); every gateway operation on it is idempotent (a repeat
//!   answers the payment as it now is). The `payments` database (`payments` row = the state
//!   the gateway last reported; `payment_attempts` = an audit row per gateway call) says
//!   what was already done, so a redelivered or re-sent command calls nothing or calls again
//!   under the same key: never a second charge.
//! - **Plan from the gateway's truth.** [`plan`] picks the next operation from the payment's
//!   state; the processor calls it, records what the gateway answered as the new state and
//!   plans again (checkout's charge: one authorize that captures, then the answer). A 409 or
//!   404 is followed by a lookup, so a surprise (an earlier "lost" capture) corrects the plan
//!   instead of failing it. Undo commands (REFUND, VOID) mean "leave nothing charged": refund
//!   a capture, void an authorization, and void an unknown key, which at the gateway *fences*
//!   it so a late authorization charges nothing; a charge command for a payment already
//!   voided or refunded is refused (FAILED).
//! - **Retries never block the partition.** A call without a usable answer (timeout, 5xx,
//!   429, an open breaker) writes the command to `payments.retries.v1` with its next attempt
//!   and a `not_before` (exponential backoff, full jitter) and moves on. `payment-retry`
//!   reads that topic (so a record waiting out its backoff holds only a retry-side permit),
//!   and after `max_attempts` (or the command's deadline) answers FAILED and dead-letters a
//!   redrivable `PaymentRetry` with the attempt history in the reason. `fleet dlq redrive`
//!   gives it a fresh attempt budget (`sf.redriven-from`).
//! - **Pipelined.** Both groups run on [`runtime::run_pipelined`] (`concurrency` orders per
//!   instance, 64 in topology.yaml): a slow call occupies one slot, not the instance.
//! - **Single writer per payment**: the payment row's lock, held across the command's
//!   gateway calls (see [`store`]); within one process, same-key records are chained.
//! - **Circuit breaker** ([`breaker`]): over the last 50 calls (at least 20), a failure ratio
//!   of 0.6 opens it for 2 s: calls are deferred to the retry topic instead of piling up
//!   timeouts; then one probe at a time. `storefleet_payment_breaker_state` (0/1/2) and
//!   `..._breaker_rejections_total` show it.
//! - **Rate limit**: a governor limiter per instance at `gateway_rate_per_sec / instances`
//!   (the contract), so the fleet never earns a 429 storm.
//!
//! Limit: the payment row's lock is held across gateway calls (bounded by the call timeout),
//! so each in-flight payment holds a PostgreSQL connection: `concurrency` × instances must
//! stay under the server's `max_connections` (200 on the stack's cluster).

pub mod breaker;
pub mod gateway;
pub mod plan;
pub mod processor;
pub mod store;

pub use processor::{Payments, Topics};
