//! The card gateway's HTTP API as the payment processor uses it (the simulator, `fleet
//! gateway-sim`, serves the same API). One payment per key (our `payment_id`); every
//! operation on it is idempotent at the gateway.

use std::time::Duration;

use events::payments::PaymentErrorKind;
use serde::{Deserialize, Serialize};

use crate::plan::{Op, Status};

/// The gateway's view of a payment.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GatewayPayment {
    pub key: String,
    pub status: String,
    pub amount_cents: i64,
    pub currency: String,
    #[serde(default)]
    pub gateway_ref: Option<String>,
    #[serde(default)]
    pub decline_reason: Option<String>,
}

impl GatewayPayment {
    pub fn status(&self) -> Option<Status> {
        Status::parse(&self.status)
    }
}

/// An answer from the gateway (it may still say no).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Payment(GatewayPayment),
    /// 409: the operation does not fit the payment's state (or another amount).
    Conflict(String),
    /// 404: no payment under the key.
    NotFound,
}

/// No usable answer: the operation may or may not have happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError {
    pub kind: PaymentErrorKind,
    pub detail: String,
}

impl CallError {
    fn new(kind: PaymentErrorKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
        }
    }
}

#[derive(Serialize)]
struct AuthorizeBody<'a> {
    amount_cents: i64,
    currency: &'a str,
    /// Capture in the same call (a sale), for commands that charge at once.
    capture: bool,
}

/// The gateway's HTTP client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("building the gateway's HTTP client")]
pub struct ClientError(#[source] reqwest::Error);

#[derive(Clone)]
pub struct Gateway {
    http: reqwest::Client,
    base: String,
}

impl Gateway {
    /// `timeout` bounds each call end to end: after it the outcome is unknown.
    pub fn new(base_url: &str, timeout: Duration) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_max_idle_per_host(256)
            .build()
            .map_err(ClientError)?;
        Ok(Self {
            http,
            base: base_url.trim_end_matches('/').to_string(),
        })
    }

    pub async fn call(
        &self,
        op: Op,
        key: &str,
        amount_minor: i64,
        currency: &str,
        capture: bool,
    ) -> Result<Reply, CallError> {
        let url = format!("{}/v1/payments/{key}/{}", self.base, op.as_str());
        let request = self.http.post(url);
        let request = match op {
            Op::Authorize => request.json(&AuthorizeBody {
                amount_cents: amount_minor,
                currency,
                capture,
            }),
            Op::Capture | Op::Void | Op::Refund => request,
        };
        Self::reply(request.send().await).await
    }

    pub async fn lookup(&self, key: &str) -> Result<Reply, CallError> {
        let url = format!("{}/v1/payments/{key}", self.base);
        Self::reply(self.http.get(url).send().await).await
    }

    async fn reply(sent: Result<reqwest::Response, reqwest::Error>) -> Result<Reply, CallError> {
        use PaymentErrorKind as E;
        let response = sent.map_err(|e| {
            if e.is_timeout() {
                CallError::new(E::Timeout, "no answer within the call timeout")
            } else {
                CallError::new(E::GatewayUnavailable, format!("request failed: {e}"))
            }
        })?;
        let status = response.status();
        let body = response.text().await.map_err(|e| {
            if e.is_timeout() {
                CallError::new(E::Timeout, "answer cut off by the call timeout")
            } else {
                CallError::new(E::GatewayUnavailable, format!("answer cut off: {e}"))
            }
        })?;
        match status.as_u16() {
            200 | 201 => serde_json::from_str(&body)
                .map(Reply::Payment)
                .map_err(|e| {
                    CallError::new(
                        E::GatewayError,
                        format!("unreadable answer: {e}: {body:.200}"),
                    )
                }),
            404 => Ok(Reply::NotFound),
            409 => Ok(Reply::Conflict(body)),
            429 => Err(CallError::new(E::RateLimited, "gateway rate limit (429)")),
            408 | 504 => Err(CallError::new(
                E::Timeout,
                format!("gateway timeout ({status})"),
            )),
            500..=599 => Err(CallError::new(
                E::GatewayUnavailable,
                format!("gateway error {status}: {body:.200}"),
            )),
            _ => Err(CallError::new(
                E::GatewayError,
                format!("unexpected {status}: {body:.200}"),
            )),
        }
    }
}
