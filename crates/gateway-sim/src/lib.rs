//! A payment gateway simulator: a real HTTP server standing in for a card processor, so the
//! payment processor can be run and fault-tested against something that charges, times out
//! and loses responses the way a real one does.
//!
//! Model: one payment per idempotency key, `authorize → capture → refund` or
//! `authorize → void`. Every call is idempotent per key: a repeat answers the payment as it is
//! now, and money moves at most once (a key captures its amount once and refunds it once). A
//! void that arrives before the authorize leaves a *fence*: the late authorize answers
//! `voided` and charges nothing. Declines are a hash of the key (`decline_rate`), so a retry
//! gets the same verdict.
//!
//! Faults ([`GatewayConfig`], changeable at runtime through `PUT /v1/faults`) hit only the
//! mutating calls: errors (500/503, nothing applied), timeouts (hang then 504, nothing applied)
//! and lost responses (applied, then hang and 504: charged but the caller cannot know),
//! plus latency, slow calls and a rate limit (429 with `Retry-After`, nothing applied). The
//! read endpoints (`GET /v1/payments/{key}`, `/v1/ledger`, `/v1/stats`) never fault, so a
//! test can audit what was really charged and check its invariants against it.
//!
//! Every change to the books happens under one lock in a pure state machine (`ledger`); the
//! HTTP layer (`server`) only maps requests to ledger calls and decides faults. The ledger
//! lives in memory: a restarted simulator forgets every payment, so tests audit a running one.
//!
//! | Endpoint | Answers |
//! |---|---|
//! | `POST /v1/payments/{key}/authorize` `{"amount_cents", "currency"}` | 200 payment (`authorized`, `declined`, or `voided` on a fence), 400 bad body, 409 other amount or currency |
//! | `POST /v1/payments/{key}/capture` | 200 `captured`, 404 unknown key, 409 declined/voided/refunded |
//! | `POST /v1/payments/{key}/void` | 200 `voided` (a fence for an unknown key; a declined payment unchanged), 409 captured/refunded |
//! | `POST /v1/payments/{key}/refund` | 200 `refunded`, 404 unknown key, 409 authorized/declined/voided |
//! | `GET /v1/payments/{key}` | 200 payment, 404 |
//! | `GET /v1/ledger` | 200 `{"payments": [...], "totals": {...}}` |
//! | `GET /v1/stats` | 200 requests by endpoint, faults by kind, `rate_limited` |
//! | `GET`, `PUT /v1/faults` | 200 the config; 400 on an invalid one (PUT) |
//! | `GET /health` | 200 `ok` |
//!
//! It also plays the sellers' image host (`GET /seller-images/{*path}`, photos from the folder
//! `STOREFLEET_PHOTOS` names; see [`seller_images`]), the other outside service of the fleet.
//!
//! Mutating calls may also answer 429, 500, 503 or 504 as configured. Errors are
//! `{"error": "..."}`.

mod config;
mod faults;
mod ledger;
mod rate_limit;
pub mod seller_images;
mod server;
mod stats;

use std::io;
use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

pub use config::{GatewayConfig, MAX_DELAY_MS};
pub use ledger::{Audit, Cents, DeclineReason, Payment, Status, Totals};

/// Serves on `listener` until `shutdown` is cancelled; hanging calls then answer 504 at once,
/// so the graceful shutdown does not wait out `hang_ms`. An invalid `config` is an
/// `InvalidInput` error before anything is served.
pub async fn serve(
    listener: TcpListener,
    config: GatewayConfig,
    shutdown: CancellationToken,
) -> io::Result<()> {
    config.validate().map_err(invalid_config)?;
    let address = listener.local_addr()?;
    info!(%address, "payment gateway simulator listening");
    let app = server::router(config, shutdown.clone()).merge(seller_images::router(
        std::env::var_os("STOREFLEET_PHOTOS")
            .map(std::path::PathBuf::from)
            .as_deref(),
    ));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

/// [`serve`] on a listener bound to `address` (port 0 picks one; it is logged).
pub async fn bind_and_serve(
    address: SocketAddr,
    config: GatewayConfig,
    shutdown: CancellationToken,
) -> io::Result<()> {
    config.validate().map_err(invalid_config)?;
    let listener = TcpListener::bind(address).await?;
    serve(listener, config, shutdown).await
}

fn invalid_config(problems: String) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("invalid gateway config: {problems}"),
    )
}
