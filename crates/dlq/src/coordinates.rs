//! Where a dead letter sits: `<dlq topic>/<partition>/<offset>`, the identity the redrive log
//! and the `sf.redriven-from` header use.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Coordinates {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

impl Coordinates {
    pub fn new(topic: impl Into<String>, partition: i32, offset: i64) -> Self {
        Self {
            topic: topic.into(),
            partition,
            offset,
        }
    }

    /// Parses `<topic>/<partition>/<offset>`. Topic names cannot contain `/`, so the last two
    /// segments are the numbers; anything else is `None`.
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.rsplitn(3, '/');
        let offset = parts.next()?.parse().ok()?;
        let partition = parts.next()?.parse().ok()?;
        let topic = parts.next()?;
        if topic.is_empty() || topic.contains('/') || partition < 0 || offset < 0 {
            return None;
        }
        Some(Self::new(topic, partition, offset))
    }
}

impl fmt::Display for Coordinates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.topic, self.partition, self.offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse_round_trip() {
        let at = Coordinates::new("dlq.shipping.order-placed.v1", 2, 1234);
        assert_eq!(at.to_string(), "dlq.shipping.order-placed.v1/2/1234");
        assert_eq!(Coordinates::parse(&at.to_string()), Some(at));
    }

    #[test]
    fn malformed_coordinates_are_none() {
        for text in [
            "",
            "topic",
            "topic/1",
            "/1/2",
            "topic/x/2",
            "topic/1/y",
            "topic/-1/2",
            "topic/1/-2",
            "a/b/1/2",
        ] {
            assert_eq!(Coordinates::parse(text), None, "{text:?}");
        }
    }
}
