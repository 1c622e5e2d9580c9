//! Counters behind `GET /v1/stats`: what the gateway was asked and what it did to the callers.

use serde::Serialize;

use crate::faults::{Delivery, InjectedError, Plan, Refusal};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Authorize,
    Capture,
    Void,
    Refund,
    GetPayment,
    Ledger,
    Stats,
    Faults,
    Health,
}

/// Requests received, by endpoint (`faults` counts both GET and PUT).
#[derive(Debug, Clone, Default, Serialize)]
pub struct RequestCounts {
    pub authorize: u64,
    pub capture: u64,
    pub void: u64,
    pub refund: u64,
    pub get_payment: u64,
    pub ledger: u64,
    pub stats: u64,
    pub faults: u64,
    pub health: u64,
}

/// Faults injected, by kind (`slow` counts calls that took the `slow_ms` penalty).
#[derive(Debug, Clone, Default, Serialize)]
pub struct FaultCounts {
    pub error_500: u64,
    pub error_503: u64,
    pub timeout: u64,
    pub lost: u64,
    pub slow: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    pub requests: RequestCounts,
    pub faults: FaultCounts,
    /// Mutating calls refused with 429.
    pub rate_limited: u64,
}

impl Stats {
    pub fn record_request(&mut self, endpoint: Endpoint) {
        let counter = match endpoint {
            Endpoint::Authorize => &mut self.requests.authorize,
            Endpoint::Capture => &mut self.requests.capture,
            Endpoint::Void => &mut self.requests.void,
            Endpoint::Refund => &mut self.requests.refund,
            Endpoint::GetPayment => &mut self.requests.get_payment,
            Endpoint::Ledger => &mut self.requests.ledger,
            Endpoint::Stats => &mut self.requests.stats,
            Endpoint::Faults => &mut self.requests.faults,
            Endpoint::Health => &mut self.requests.health,
        };
        *counter += 1;
    }

    pub fn record_plan(&mut self, plan: &Plan) {
        let counter = match plan {
            Plan::Apply(Delivery::Answer { slow: false, .. }) => return,
            Plan::Apply(Delivery::Answer { slow: true, .. }) => &mut self.faults.slow,
            Plan::Apply(Delivery::Lost { .. }) => &mut self.faults.lost,
            Plan::Refuse(Refusal::Error(InjectedError::Internal)) => &mut self.faults.error_500,
            Plan::Refuse(Refusal::Error(InjectedError::Unavailable)) => &mut self.faults.error_503,
            Plan::Refuse(Refusal::Timeout { .. }) => &mut self.faults.timeout,
        };
        *counter += 1;
    }
}
