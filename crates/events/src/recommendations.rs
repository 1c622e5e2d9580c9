//! `storefleet.recommendations`: what shoppers do in the storefront, for the recommendations
//! precompute.

use serde::{Deserialize, Serialize};

/// schemas/recommendations/UserInteraction.avsc — something a shopper did (key user id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInteraction {
    pub event_id: String,
    pub occurred_at: i64,
    /// Storefront session id, or the request id when there is no session.
    pub correlation_id: String,
    pub causation_id: Option<String>,
    pub user_id: String,
    pub session_id: Option<String>,
    pub kind: InteractionKind,
    /// VIEW, ADD_TO_CART, PURCHASE.
    pub product_id: Option<String>,
    /// ADD_TO_CART, PURCHASE.
    pub quantity: Option<i32>,
    /// PURCHASE.
    pub order_id: Option<String>,
    /// SEARCH.
    pub query: Option<String>,
    pub surface: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InteractionKind {
    Unknown,
    View,
    AddToCart,
    Purchase,
    Search,
}

/// schemas/recommendations/UserRecommendations.avsc — one user's precomputed list (key user
/// id), written by the recommendations processor after each training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRecommendations {
    pub event_id: String,
    pub occurred_at: i64,
    /// The model run (version) that produced the list.
    pub correlation_id: String,
    pub causation_id: Option<String>,
    pub user_id: String,
    pub items: Vec<RecommendedItem>,
    pub strategy: RecommendationStrategy,
    pub model_version: String,
    pub computed_at: i64,
    pub expires_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecommendedItem {
    pub product_id: String,
    pub rank: i32,
    pub score: f64,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RecommendationStrategy {
    Unknown,
    CollaborativeFiltering,
    PopularityFallback,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_interaction_round_trips_through_its_schema() {
        for (kind, product, query) in [
            (InteractionKind::View, Some("p-1"), None),
            (InteractionKind::Search, None, Some("red chair")),
        ] {
            let value = UserInteraction {
                event_id: "0b9f6a52-3c1d-4e8f-9a7b-1c2d3e4f5a6b".into(),
                occurred_at: 1_764_300_000_000,
                correlation_id: "session-1".into(),
                causation_id: None,
                user_id: "user-7".into(),
                session_id: Some("session-1".into()),
                kind,
                product_id: product.map(str::to_string),
                quantity: product.map(|_| 2),
                order_id: None,
                query: query.map(str::to_string),
                surface: Some("product_page".into()),
            };
            crate::schema_check::round_trip("recommendations/UserInteraction.avsc", &value);
        }
    }

    #[test]
    fn user_recommendations_round_trip_through_their_schema() {
        let value = UserRecommendations {
            event_id: "1b9f6a52-3c1d-4e8f-9a7b-1c2d3e4f5a6b".into(),
            occurred_at: 1_764_300_000_000,
            correlation_id: "v1764300000000".into(),
            causation_id: None,
            user_id: "user-7".into(),
            items: vec![RecommendedItem {
                product_id: "2b9f6a52-3c1d-4e8f-9a7b-1c2d3e4f5a6b".into(),
                rank: 1,
                score: 0.75,
                reason: Some("cf".into()),
            }],
            strategy: RecommendationStrategy::CollaborativeFiltering,
            model_version: "v1764300000000".into(),
            computed_at: 1_764_300_000_000,
            expires_at: Some(1_764_343_200_000),
        };
        crate::schema_check::round_trip("recommendations/UserRecommendations.avsc", &value);
    }
}
