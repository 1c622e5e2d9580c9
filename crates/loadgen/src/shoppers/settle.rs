//! What the fleet recorded of a run: the saga's transitions of the accepted orders and the
//! dead letters.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use events::checkout::{SagaState, SagaTransition};

use crate::Result;

pub(super) async fn dead_letters(
    env: &runtime::StackEnv,
    topics: &[String],
) -> Result<HashMap<String, i64>> {
    let mut out = HashMap::new();
    for t in topics {
        let marks = dlq::kafka::topic_watermarks(&env.bootstrap_servers, t).await?;
        out.insert(t.clone(), marks.iter().map(|m| m.high).sum());
    }
    Ok(out)
}

pub(super) struct Outcome {
    pub(super) state: SagaState,
    pub(super) compensated: bool,
    /// Which compensations ran: holds released, authorization voided, capture refunded.
    pub(super) released: bool,
    pub(super) voided: bool,
    pub(super) refunded: bool,
    pub(super) failure: String,
    pub(super) sequence: i64,
    /// First and last transition times (the saga's clock).
    pub(super) first_at: i64,
    pub(super) last_at: i64,
}

/// Reads the saga's transitions since the run began until every accepted order has ended
/// (PLACED, FAILED or STUCK) or `until` passes.
pub(super) async fn settle(
    env: &runtime::StackEnv,
    topic: &str,
    start: &[dlq::kafka::Watermarks],
    accepted: &HashMap<String, i64>,
    until: Instant,
) -> Result<HashMap<String, Outcome>> {
    let mut outcome: HashMap<String, Outcome> = HashMap::new();
    let mut from: HashMap<i32, i64> = start.iter().map(|m| (m.partition, m.high)).collect();
    loop {
        let marks = dlq::kafka::topic_watermarks(&env.bootstrap_servers, topic).await?;
        let ranges = marks
            .iter()
            .map(|m| dlq::kafka::PartitionRange {
                partition: m.partition,
                start: from.get(&m.partition).copied().unwrap_or(m.low),
                end: m.high,
            })
            .collect();
        for t in wiring::topics::read_values_in::<SagaTransition>(env, topic, ranges).await? {
            if !accepted.contains_key(&t.order_id) {
                continue;
            }
            let o = outcome.entry(t.order_id.clone()).or_insert(Outcome {
                state: SagaState::Unknown,
                compensated: false,
                released: false,
                voided: false,
                refunded: false,
                failure: String::new(),
                sequence: -1,
                first_at: t.occurred_at,
                last_at: t.occurred_at,
            });
            // Compensated: the saga undid something (released holds, voided or refunded).
            o.compensated |= matches!(
                t.to_state,
                SagaState::ReleasingInventory
                    | SagaState::VoidingPayment
                    | SagaState::RefundingPayment
            );
            o.released |= t.to_state == SagaState::ReleasingInventory;
            o.voided |= t.to_state == SagaState::VoidingPayment;
            o.refunded |= t.to_state == SagaState::RefundingPayment;
            o.first_at = o.first_at.min(t.occurred_at);
            o.last_at = o.last_at.max(t.occurred_at);
            if t.sequence > o.sequence {
                o.sequence = t.sequence;
                o.state = t.to_state;
                if let Some(code) = t.failure_code {
                    o.failure = format!("{code:?}");
                }
            }
        }
        for m in &marks {
            from.insert(m.partition, m.high);
        }
        let ended: HashSet<&String> = outcome
            .iter()
            .filter(|(_, o)| {
                matches!(
                    o.state,
                    SagaState::Placed | SagaState::Failed | SagaState::Stuck
                )
            })
            .map(|(id, _)| id)
            .collect();
        if ended.len() == accepted.len() || Instant::now() >= until {
            outcome.retain(|_, o| {
                matches!(
                    o.state,
                    SagaState::Placed | SagaState::Failed | SagaState::Stuck
                )
            });
            return Ok(outcome);
        }
        eprint!("\r   orders ended {}/{}   ", ended.len(), accepted.len());
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
