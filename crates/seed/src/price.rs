//! Exact money arithmetic for list prices. A unit list price is `Sales / (Quantity × (1 −
//! Discount))`; computed in floating point, a price lying on a half cent could round either
//! way. Here every amount is an exact fraction of cents, so the median and its rounding are
//! exact and the same on every machine.
//!
//! Sales and discounts are read as decimals with at most four fractional digits (the data set
//! has at most four); that bound keeps every intermediate product within `i128`.

use std::cmp::Ordering;
use std::fmt;

/// Fractional digits a sales amount or discount may have.
const SCALE_DIGITS: usize = 4;
const SCALE: i128 = 10_000;
/// Most units on one order line; a bound that keeps the arithmetic within `i128`.
pub const MAX_QUANTITY: u32 = 1_000_000;
/// `numeric(12, 2)` holds less than 10^10 cents.
const MAX_CENTS: i64 = 9_999_999_999;

/// A whole number of cents, the unit of `numeric(12, 2)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cents(pub i64);

impl fmt::Display for Cents {
    /// `1234` → `12.34`: the text PostgreSQL reads as `numeric`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

/// An exact, non-negative price in cents: `numerator / denominator`, denominator > 0.
#[derive(Debug, Clone, Copy)]
pub struct UnitPrice {
    numerator: i128,
    denominator: i128,
}

impl PartialEq for UnitPrice {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for UnitPrice {}

impl PartialOrd for UnitPrice {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for UnitPrice {
    fn cmp(&self, other: &Self) -> Ordering {
        // Within bounds: numerators < 10^21, denominators <= 10^10.
        (self.numerator * other.denominator).cmp(&(other.numerator * self.denominator))
    }
}

/// Why a line's amounts give no price.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PriceProblem {
    /// Not a plain decimal with at most four fractional digits.
    NotADecimal,
    Negative,
    QuantityOutOfRange,
    /// A discount must be at least 0 and below 1.
    DiscountOutOfRange,
    /// Above what `numeric(12, 2)` holds.
    TooLarge,
}

impl fmt::Display for PriceProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotADecimal => "not a decimal with at most 4 fractional digits",
            Self::Negative => "negative amount",
            Self::QuantityOutOfRange => "quantity must be 1 to 1,000,000",
            Self::DiscountOutOfRange => "discount must be at least 0 and below 1",
            Self::TooLarge => "price above what numeric(12, 2) holds",
        })
    }
}

/// Parses `-12.3456`-style text into ten-thousandths.
pub fn parse_decimal(text: &str) -> Result<i128, PriceProblem> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let plain = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty()
        || whole.len() > 15
        || fraction.len() > SCALE_DIGITS
        || (digits.contains('.') && fraction.is_empty())
        || !plain(whole)
        || !plain(fraction)
    {
        return Err(PriceProblem::NotADecimal);
    }
    let mut value: i128 = 0;
    for b in whole.bytes().chain(fraction.bytes()) {
        value = value * 10 + i128::from(b - b'0');
    }
    for _ in fraction.len()..SCALE_DIGITS {
        value *= 10;
    }
    Ok(if negative { -value } else { value })
}

/// The list price of one unit of an order line: `sales / (quantity × (1 − discount))`.
pub fn unit_price(sales: &str, quantity: u32, discount: &str) -> Result<UnitPrice, PriceProblem> {
    let sales = parse_decimal(sales)?;
    let discount = parse_decimal(discount)?;
    if sales < 0 {
        return Err(PriceProblem::Negative);
    }
    if quantity == 0 || quantity > MAX_QUANTITY {
        return Err(PriceProblem::QuantityOutOfRange);
    }
    if !(0..SCALE).contains(&discount) {
        return Err(PriceProblem::DiscountOutOfRange);
    }
    // cents = 100 · (sales/10⁴) / (q · (10⁴ − discount)/10⁴) = 100 · sales / (q · (10⁴ − discount))
    Ok(UnitPrice {
        numerator: 100 * sales,
        denominator: i128::from(quantity) * (SCALE - discount),
    })
}

/// The median of `prices` rounded to the nearest cent, halves away from zero; with an even
/// count, the mean of the two middle prices. `None` for no prices.
pub fn median(prices: &mut [UnitPrice]) -> Option<Result<Cents, PriceProblem>> {
    if prices.is_empty() {
        return None;
    }
    prices.sort_unstable();
    let upper = prices[prices.len() / 2];
    let middle = if prices.len() % 2 == 1 {
        upper
    } else {
        let lower = prices[prices.len() / 2 - 1];
        UnitPrice {
            numerator: lower.numerator * upper.denominator + upper.numerator * lower.denominator,
            denominator: 2 * lower.denominator * upper.denominator,
        }
    };
    Some(round_to_cents(middle))
}

fn round_to_cents(price: UnitPrice) -> Result<Cents, PriceProblem> {
    // Non-negative, so floor(x + 1/2) rounds halves away from zero.
    let cents = (2 * price.numerator + price.denominator) / (2 * price.denominator);
    i64::try_from(cents)
        .ok()
        .filter(|c| *c <= MAX_CENTS)
        .map(Cents)
        .ok_or(PriceProblem::TooLarge)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cents(sales: &str, quantity: u32, discount: &str) -> Cents {
        median(&mut [unit_price(sales, quantity, discount).unwrap()])
            .unwrap()
            .unwrap()
    }

    #[test]
    fn decimals_parse_exactly_or_not_at_all() {
        assert_eq!(parse_decimal("261.96"), Ok(2_619_600));
        assert_eq!(parse_decimal("22.368"), Ok(223_680));
        assert_eq!(parse_decimal("0"), Ok(0));
        assert_eq!(parse_decimal("0.45"), Ok(4_500));
        assert_eq!(parse_decimal("-1.5"), Ok(-15_000));
        for bad in ["", ".5", "5.", "1.23456", "1e3", "1,5", " 1", "--1", "0x10"] {
            assert_eq!(
                parse_decimal(bad),
                Err(PriceProblem::NotADecimal),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn unit_price_undoes_quantity_and_discount() {
        assert_eq!(cents("261.96", 2, "0"), Cents(13_098));
        // 22.368 / (2 × 0.8) = 13.98
        assert_eq!(cents("22.368", 2, "0.2"), Cents(1_398));
        // 0.444 / (1 × 0.8) = 0.555 exactly: a half cent, rounded up (in f64 it is
        // 0.55499999…, which would round down).
        assert_eq!(cents("0.444", 1, "0.2"), Cents(56));
        // 0.444 / (1 × 0.2) = 2.22.
        assert_eq!(cents("0.444", 1, "0.8"), Cents(222));
        // 10 / 3 = 3.3333…
        assert_eq!(cents("10", 3, "0"), Cents(333));
    }

    #[test]
    fn impossible_lines_are_refused() {
        assert_eq!(
            unit_price("1", 0, "0").unwrap_err(),
            PriceProblem::QuantityOutOfRange
        );
        assert_eq!(
            unit_price("1", 1, "1").unwrap_err(),
            PriceProblem::DiscountOutOfRange
        );
        assert_eq!(
            unit_price("1", 1, "-0.1").unwrap_err(),
            PriceProblem::DiscountOutOfRange
        );
        assert_eq!(
            unit_price("-1", 1, "0").unwrap_err(),
            PriceProblem::Negative
        );
        let huge = unit_price("999999999999999", 1, "0").unwrap();
        assert_eq!(median(&mut [huge]).unwrap(), Err(PriceProblem::TooLarge));
    }

    #[test]
    fn median_is_the_middle_or_the_mean_of_the_two_middles() {
        let p = |sales: &str| unit_price(sales, 1, "0").unwrap();
        assert_eq!(median(&mut []), None);
        assert_eq!(
            median(&mut [p("5"), p("1"), p("100")]).unwrap(),
            Ok(Cents(500))
        );
        // (1.00 + 1.01) / 2 = 1.005 → 1.01
        assert_eq!(
            median(&mut [p("1.01"), p("9"), p("0.5"), p("1")]).unwrap(),
            Ok(Cents(101))
        );
    }

    #[test]
    fn cents_print_as_numeric_text() {
        assert_eq!(Cents(13_098).to_string(), "130.98");
        assert_eq!(Cents(5).to_string(), "0.05");
        assert_eq!(Cents(0).to_string(), "0.00");
        assert_eq!(Cents(-250).to_string(), "-2.50");
    }
}
