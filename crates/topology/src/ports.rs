//! The ports each processor kind reads and writes: a closed, typed set per kind. topology.yaml
//! binds every port to a topic (`inputs: {requests: {topic: …, dead_letter: …}}`,
//! `outputs: {placed: orders.order-placed.v1}`), validation checks that the bindings match
//! the kind's set and that each topic carries the record the port expects, and processors
//! look their topics up by port name, never by a topic name's prefix. Renaming a topic (an
//! isolated copy for a test) changes the binding, not the code.

use crate::model::{ProcessorKind, ProcessorSpec};

/// One port: its name in topology.yaml and the Avro record its topic's values must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Port {
    pub name: &'static str,
    /// Full name of the value record (`namespace.Name`).
    pub record: &'static str,
    /// A kind that can run on either of two inputs (payment: new commands, or its retries)
    /// marks both optional; at least one input must be bound.
    pub required: bool,
}

/// The ports of one processor kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub inputs: &'static [Port],
    pub outputs: &'static [Port],
}

const fn port(name: &'static str, record: &'static str) -> Port {
    Port {
        name,
        record,
        required: true,
    }
}

const fn optional(name: &'static str, record: &'static str) -> Port {
    Port {
        name,
        record,
        required: false,
    }
}

const CHECKOUT_REQUESTED: &str = "storefleet.orders.CheckoutRequested";
const ORDER_PLACED: &str = "storefleet.orders.OrderPlaced";
const SAGA_TRANSITION: &str = "storefleet.checkout.SagaTransition";
const STOCK_COMMAND: &str = "storefleet.inventory.StockCommand";
const STOCK_RESULT: &str = "storefleet.inventory.StockResult";
const STOCK_EVENT: &str = "storefleet.inventory.StockEvent";
const AVAILABILITY: &str = "storefleet.inventory.ProductAvailability";
const PAYMENT_COMMAND: &str = "storefleet.payments.PaymentCommand";
const PAYMENT_RETRY: &str = "storefleet.payments.PaymentRetry";
const PAYMENT_RESULT: &str = "storefleet.payments.PaymentResult";
const SHIPMENT_EVENT: &str = "storefleet.shipping.ShipmentEvent";
const STOCK_CHANGE: &str = "storefleet.cdc.StockChange";
const INTERACTION: &str = "storefleet.recommendations.UserInteraction";
const PRODUCT_CHANGE: &str = "storefleet.cdc.ProductChange";
const INDEX_COMMITTED: &str = "storefleet.search.IndexCommitted";
const USER_RECOMMENDATIONS: &str = "storefleet.recommendations.UserRecommendations";
const PRODUCT_IMAGE_CHANGE: &str = "storefleet.cdc.ProductImageChange";
const IMAGE_CHECK_REQUESTED: &str = "storefleet.images.ImageCheckRequested";
const IMAGE_CHECK_RETRY: &str = "storefleet.images.ImageCheckRetry";
const IMAGE_CHECK_RESULT: &str = "storefleet.images.ImageCheckResult";

const SHIPPING: Ports = Ports {
    inputs: &[port("placed", ORDER_PLACED)],
    outputs: &[port("shipments", SHIPMENT_EVENT)],
};

const INVENTORY: Ports = Ports {
    inputs: &[port("commands", STOCK_COMMAND)],
    outputs: &[
        port("results", STOCK_RESULT),
        port("events", STOCK_EVENT),
        port("availability", AVAILABILITY),
    ],
};

const INVENTORY_STOCK_FEED: Ports = Ports {
    inputs: &[port("stock_changes", STOCK_CHANGE)],
    outputs: &[port("commands", STOCK_COMMAND)],
};

const PAYMENT: Ports = Ports {
    inputs: &[
        optional("commands", PAYMENT_COMMAND),
        optional("retries", PAYMENT_RETRY),
    ],
    outputs: &[
        port("results", PAYMENT_RESULT),
        port("retries", PAYMENT_RETRY),
        // Retries that ran out of attempts: the retry topic's dead-letter topic.
        port("exhausted", crate::DEAD_LETTER_RECORD),
    ],
};

const CHECKOUT: Ports = Ports {
    inputs: &[
        port("requests", CHECKOUT_REQUESTED),
        port("stock_results", STOCK_RESULT),
        port("payment_results", PAYMENT_RESULT),
    ],
    outputs: &[
        port("stock_commands", STOCK_COMMAND),
        port("payment_commands", PAYMENT_COMMAND),
        port("placed", ORDER_PLACED),
        port("transitions", SAGA_TRANSITION),
    ],
};

const STOREFRONT: Ports = Ports {
    inputs: &[
        port("transitions", SAGA_TRANSITION),
        port("availability", AVAILABILITY),
        optional("image_results", IMAGE_CHECK_RESULT),
    ],
    outputs: &[
        port("checkout_requests", CHECKOUT_REQUESTED),
        port("interactions", INTERACTION),
    ],
};

const SEARCH_INDEXER: Ports = Ports {
    inputs: &[
        port("products", PRODUCT_CHANGE),
        port("availability", AVAILABILITY),
    ],
    outputs: &[port("commits", INDEX_COMMITTED)],
};

const RECOMMENDATIONS: Ports = Ports {
    inputs: &[
        port("interactions", INTERACTION),
        port("placed", ORDER_PLACED),
        port("availability", AVAILABILITY),
        port("products", PRODUCT_CHANGE),
    ],
    outputs: &[port("lists", USER_RECOMMENDATIONS)],
};

/// The first instance reads uploads (catalog rows) and re-check requests; the retry instance
/// reads its own retry topic (like payment's).
const IMAGE_QUALITY: Ports = Ports {
    inputs: &[
        optional("images", PRODUCT_IMAGE_CHANGE),
        optional("requests", IMAGE_CHECK_REQUESTED),
        optional("retries", IMAGE_CHECK_RETRY),
    ],
    outputs: &[
        port("results", IMAGE_CHECK_RESULT),
        port("retries", IMAGE_CHECK_RETRY),
    ],
};

impl ProcessorKind {
    /// The ports of this kind. Adding a kind means adding its ports here.
    pub fn ports(self) -> Ports {
        match self {
            ProcessorKind::Shipping => SHIPPING,
            ProcessorKind::Inventory => INVENTORY,
            ProcessorKind::InventoryStockFeed => INVENTORY_STOCK_FEED,
            ProcessorKind::Payment => PAYMENT,
            ProcessorKind::Checkout => CHECKOUT,
            ProcessorKind::Storefront => STOREFRONT,
            ProcessorKind::SearchIndexer => SEARCH_INDEXER,
            ProcessorKind::Recommendations => RECOMMENDATIONS,
            ProcessorKind::ImageQuality => IMAGE_QUALITY,
        }
    }
}

/// What is wrong with `p`'s port bindings, as (path under the processor, message): a required
/// port left unbound, a port its kind does not have, a topic whose values (`record` gives a
/// topic's record name, if it has one) are not the record the port takes.
pub(crate) fn check(
    p: &ProcessorSpec,
    record: impl Fn(&str) -> Option<String>,
) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    let ports = p.kind.ports();
    let inputs: Vec<(&str, &str)> = p
        .inputs
        .iter()
        .map(|(port, i)| (port.as_str(), i.topic.as_str()))
        .collect();
    let outputs: Vec<(&str, &str)> = p
        .outputs
        .iter()
        .map(|(port, topic)| (port.as_str(), topic.as_str()))
        .collect();
    for (side, declared, bound) in [
        ("inputs", ports.inputs, inputs),
        ("outputs", ports.outputs, outputs),
    ] {
        for port in declared.iter().filter(|port| port.required) {
            if !bound.iter().any(|(name, _)| *name == port.name) {
                problems.push((
                    side.to_string(),
                    format!(
                        "port `{}` of kind {} is not bound to a topic",
                        port.name,
                        p.kind.as_str()
                    ),
                ));
            }
        }
        for (name, topic) in bound {
            let Some(port) = declared.iter().find(|port| port.name == name) else {
                let known: Vec<&str> = declared.iter().map(|port| port.name).collect();
                problems.push((
                    format!("{side}.{name}"),
                    format!(
                        "kind {} has no {side} port `{name}` (its ports: {})",
                        p.kind.as_str(),
                        known.join(", ")
                    ),
                ));
                continue;
            };
            if let Some(found) = record(topic).filter(|r| r != port.record) {
                problems.push((
                    format!("{side}.{name}"),
                    format!(
                        "`{topic}` carries {found} but port `{name}` takes {}",
                        port.record
                    ),
                ));
            }
        }
    }
    problems
}
