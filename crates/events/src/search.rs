//! `storefleet.search`: the search index's commits.

use serde::{Deserialize, Serialize};

/// schemas/search/IndexCommitted.avsc
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexCommitted {
    pub event_id: String,
    pub occurred_at: i64,
    pub correlation_id: String,
    pub causation_id: Option<String>,
    pub index_name: String,
    pub commit_id: String,
    pub documents_upserted: i32,
    pub documents_deleted: i32,
    pub positions: Vec<SourcePosition>,
    pub newest_source_at: Option<i64>,
    pub duration_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourcePosition {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_committed_matches_its_schema() {
        let event = IndexCommitted {
            event_id: "1b9f6a52-3c1d-4e8f-9a7b-1c2d3e4f5a6b".into(),
            occurred_at: 1_764_300_000_001,
            correlation_id: "gen-1/7".into(),
            causation_id: None,
            index_name: "products".into(),
            commit_id: "gen-1/7".into(),
            documents_upserted: 3,
            documents_deleted: 1,
            positions: vec![SourcePosition {
                topic: "cdc.catalog.products.v1".into(),
                partition: 2,
                offset: 41,
            }],
            newest_source_at: Some(1_764_300_000_000),
            duration_ms: 12,
        };
        crate::schema_check::round_trip("search/IndexCommitted.avsc", &event);
        crate::schema_check::round_trip(
            "search/IndexCommitted.avsc",
            &IndexCommitted {
                newest_source_at: None,
                positions: vec![],
                ..event
            },
        );
    }
}
