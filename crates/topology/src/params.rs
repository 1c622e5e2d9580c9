//! Typed parameters per processor and connector kind. They live here, beside the rest of the
//! configuration, so `fleet validate` checks them without linking the processors.

use serde::{Deserialize, Serialize};

use crate::model::ProcessorKind;

/// Parameters of one processor, by kind.
#[derive(Debug, Clone, PartialEq)]
pub enum ProcessorParams {
    Shipping(ShippingParams),
}

impl ProcessorParams {
    pub(crate) fn parse(
        kind: ProcessorKind,
        raw: &serde_yaml::Value,
    ) -> Result<Self, serde_yaml::Error> {
        let raw = if raw.is_null() {
            serde_yaml::Value::Mapping(Default::default())
        } else {
            raw.clone()
        };
        Ok(match kind {
            ProcessorKind::Shipping => ProcessorParams::Shipping(serde_yaml::from_value(raw)?),
        })
    }
}

/// Shipping: order placed → shipment requested (and, simulated, label created and shipped).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ShippingParams {
    /// Carrier named on labels.
    #[serde(default = "default_carrier")]
    pub carrier: String,
    /// Fulfillment center used when the order names none.
    #[serde(default = "default_fc")]
    pub default_fulfillment_center: String,
}

fn default_carrier() -> String {
    "storefleet-post".to_string()
}

fn default_fc() -> String {
    "FC-EAST-1".to_string()
}

/// The PostgreSQL change-data-capture connector.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresCdcParams {
    pub database_url: String,
    pub slot: String,
    pub publication: String,
    /// `schema.table` → topic.
    pub tables: Vec<CdcTable>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CdcTable {
    pub table: String,
    pub topic: String,
}
