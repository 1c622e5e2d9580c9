//! Order-placed events as the checkout saga would publish them.

use events::orders::{OrderLine, OrderPlaced, PaymentStatus};
use events::{Address, ShippingSpeed};
use rand::distr::Distribution;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub const FULFILLMENT_CENTERS: [&str; 4] = ["FC-EAST-1", "FC-WEST-2", "FC-CENTRAL-1", "FC-SOUTH-3"];
const CITIES: [(&str, &str, &str); 5] = [
    ("Seattle", "WA", "98109"),
    ("Austin", "TX", "73301"),
    ("Columbus", "OH", "43004"),
    ("Denver", "CO", "80014"),
    ("Miami", "FL", "33101"),
];

/// Zipf(s) over `n` ranks by inverse CDF on precomputed weights.
pub struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    pub fn new(n: usize, exponent: f64) -> Self {
        let mut total = 0.0;
        let cumulative = (1..=n.max(1))
            .map(|rank| {
                total += 1.0 / (rank as f64).powf(exponent);
                total
            })
            .collect::<Vec<_>>();
        let cumulative = cumulative.into_iter().map(|c| c / total).collect();
        Self { cumulative }
    }

    /// A 0-based rank; rank 0 is the most popular.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> usize {
        let u: f64 = rng.random();
        self.cumulative
            .partition_point(|c| *c < u)
            .min(self.cumulative.len() - 1)
    }
}

/// Deterministic order stream for a run: the same seed gives the same orders.
pub struct OrderGenerator {
    rng: StdRng,
    popularity: Zipf,
    products: usize,
    run: String,
    next: u64,
}

impl OrderGenerator {
    pub fn new(run: &str, seed: u64, products: usize) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
            popularity: Zipf::new(products, 1.1),
            products,
            run: run.to_string(),
            next: 0,
        }
    }

    pub fn next_order(&mut self, now_ms: i64) -> OrderPlaced {
        self.next += 1;
        let order_id = format!("ord-{}-{:08}", self.run, self.next);
        let line_count = 1 + self
            .rng
            .random_range(0..4usize)
            .min(self.rng.random_range(0..4usize));
        let mut chosen = Vec::new();
        while chosen.len() < line_count.min(self.products) {
            let rank = self.popularity.sample(&mut self.rng);
            if !chosen.contains(&rank) {
                chosen.push(rank);
            }
        }
        let lines: Vec<OrderLine> = chosen
            .iter()
            .enumerate()
            .map(|(i, rank)| OrderLine {
                line_number: i32::try_from(i + 1).unwrap_or(i32::MAX),
                product_id: format!("prod-{rank:05}"),
                sku: format!("SKU-{rank:05}"),
                quantity: 1 + (self.rng.random::<u8>() % 3) as i32,
                unit_price_minor: 199 + (*rank as i64 * 7919) % 20_000,
                fulfillment_center: Some(
                    FULFILLMENT_CENTERS[self.rng.random_range(0..FULFILLMENT_CENTERS.len())]
                        .to_string(),
                ),
            })
            .collect();
        let subtotal: i64 = lines
            .iter()
            .map(|l| l.unit_price_minor * i64::from(l.quantity))
            .sum();
        let (city, region, zip) = CITIES[self.rng.random_range(0..CITIES.len())];
        let user = rand::distr::Uniform::new(0u32, 50_000)
            .map(|d| d.sample(&mut self.rng))
            .unwrap_or(0);
        OrderPlaced {
            event_id: runtime::ids::derived(&["order-placed", &order_id]),
            occurred_at: now_ms,
            correlation_id: order_id.clone(),
            causation_id: None,
            order_id: order_id.clone(),
            user_id: format!("user-{user:05}"),
            lines,
            currency: "USD".into(),
            subtotal_minor: subtotal,
            shipping_fee_minor: 0,
            tax_minor: subtotal / 10,
            total_minor: subtotal + subtotal / 10,
            shipping_address: Address {
                recipient_name: format!("Customer {user}"),
                line1: format!("{} Main St", 1 + user % 999),
                line2: None,
                city: city.into(),
                region: Some(region.into()),
                postal_code: zip.into(),
                country_code: "US".into(),
                phone: None,
            },
            shipping_speed: ShippingSpeed::Standard,
            payment_id: format!("pay-{order_id}"),
            payment_status: PaymentStatus::Captured,
            gateway_reference: None,
        }
    }
}

/// Distinct fulfillment centers of an order = shipments it yields (two events each).
pub fn shipments_of(order: &OrderPlaced) -> usize {
    let mut centers: Vec<&str> = order
        .lines
        .iter()
        .filter_map(|l| l.fulfillment_center.as_deref())
        .collect();
    centers.sort_unstable();
    centers.dedup();
    centers.len().max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_prefers_low_ranks_and_stays_in_range() {
        let zipf = Zipf::new(1000, 1.1);
        let mut rng = StdRng::seed_from_u64(7);
        let mut counts = vec![0u32; 1000];
        for _ in 0..20_000 {
            counts[zipf.sample(&mut rng)] += 1;
        }
        assert!(counts[0] > counts[10] && counts[10] > counts[500]);
        let top_5_percent: u32 = counts[..50].iter().sum();
        assert!(
            top_5_percent > 20_000 / 2,
            "the head takes most traffic: {top_5_percent}"
        );
    }

    #[test]
    fn orders_are_deterministic_per_seed_and_well_formed() {
        let mut a = OrderGenerator::new("t", 1, 100);
        let mut b = OrderGenerator::new("t", 1, 100);
        for _ in 0..100 {
            let (x, y) = (a.next_order(5), b.next_order(5));
            assert_eq!(x, y);
            assert!(!x.lines.is_empty() && x.lines.len() <= 4);
            assert!(x.lines.iter().all(|l| l.quantity > 0));
            let ids: std::collections::HashSet<_> = x.lines.iter().map(|l| &l.product_id).collect();
            assert_eq!(ids.len(), x.lines.len(), "no product twice in one order");
        }
    }
}
