//! Just enough of the Prometheus text exposition format to read the instances' `/metrics`:
//! sum a metric over its label sets, and merge several expositions into one (the
//! `/metrics/fleet` federation endpoint) with each family's HELP/TYPE once and labels added
//! to every sample. Pure: text in, text out; malformed lines are skipped, never a panic.

use std::collections::HashMap;

/// The sum of every sample named `name` (any labels); `None` when there is none.
pub fn sum(text: &str, name: &str) -> Option<f64> {
    let mut total = None;
    for line in text.lines() {
        let Some(sample) = Sample::parse(line) else {
            continue;
        };
        if sample.name == name {
            *total.get_or_insert(0.0) += sample.value;
        }
    }
    total
}

/// The cumulative buckets `(le, count)` of histogram `name` whose samples carry every label
/// of `labels` (name, unquoted value), summed over the other label sets, in `le` order.
pub fn histogram(text: &str, name: &str, labels: &[(&str, &str)]) -> Vec<(f64, f64)> {
    let bucket = format!("{name}_bucket");
    let mut by_le: Vec<(f64, f64)> = Vec::new();
    for line in text.lines() {
        let Some(sample) = Sample::parse(line) else {
            continue;
        };
        if sample.name != bucket {
            continue;
        }
        let pairs = sample.label_pairs();
        let value_of = |label: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == label)
                .map(|(_, v)| v.trim_matches('"'))
        };
        if labels.iter().any(|(n, v)| value_of(n) != Some(*v)) {
            continue;
        }
        let Some(le) = value_of("le").and_then(parse_value) else {
            continue;
        };
        match by_le.iter_mut().find(|(l, _)| *l == le) {
            Some((_, count)) => *count += sample.value,
            None => by_le.push((le, sample.value)),
        }
    }
    by_le.sort_by(|a, b| a.0.total_cmp(&b.0));
    by_le
}

/// The `q` quantile (0..=1) of cumulative buckets, interpolated linearly inside the bucket
/// it falls in (as Prometheus' `histogram_quantile` does); `None` without observations.
pub fn quantile(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(lower.0);
            }
            let width = count - lower.1;
            let into = if width > 0.0 {
                (rank - lower.1) / width
            } else {
                1.0
            };
            return Some(lower.0 + (le - lower.0) * into);
        }
        lower = (le, count);
    }
    Some(lower.0)
}

/// `after − before`, bucket by bucket (a counter delta over a window).
pub fn delta(after: &[(f64, f64)], before: &[(f64, f64)]) -> Vec<(f64, f64)> {
    after
        .iter()
        .map(|&(le, count)| {
            let earlier = before
                .iter()
                .find(|(l, _)| *l == le)
                .map_or(0.0, |(_, c)| *c);
            (le, (count - earlier).max(0.0))
        })
        .collect()
}

/// One sample line, split.
struct Sample<'a> {
    name: &'a str,
    /// Between the braces, without them (empty when there are none).
    labels: &'a str,
    /// Value and optional timestamp, as written.
    rest: &'a str,
    value: f64,
}

impl<'a> Sample<'a> {
    fn parse(line: &'a str) -> Option<Self> {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let name_end = line
            .find(|c: char| c == '{' || c.is_whitespace())
            .unwrap_or(line.len());
        let name = &line[..name_end];
        if name.is_empty() {
            return None;
        }
        let after = &line[name_end..];
        let (labels, rest) = if let Some(inner) = after.strip_prefix('{') {
            let close = closing_brace(inner)?;
            (&inner[..close], inner[close + 1..].trim())
        } else {
            ("", after.trim())
        };
        let value = parse_value(rest.split_whitespace().next()?)?;
        Some(Self {
            name,
            labels,
            rest,
            value,
        })
    }

    /// The labels as (name, quoted value as written).
    fn label_pairs(&self) -> Vec<(&'a str, &'a str)> {
        let mut pairs = Vec::new();
        let mut rest = self.labels;
        while let Some(eq) = rest.find('=') {
            let name = rest[..eq].trim().trim_start_matches(',').trim();
            let after = rest[eq + 1..].trim_start();
            let Some(quoted) = after.strip_prefix('"') else {
                break;
            };
            let Some(end) = end_of_quoted(quoted) else {
                break;
            };
            pairs.push((name, &after[..end + 2]));
            rest = &quoted[end + 1..];
        }
        pairs
    }
}

/// Index of the `}` closing a label set, skipping braces inside quoted values.
fn closing_brace(inner: &str) -> Option<usize> {
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in inner.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            '}' if !in_quotes => return Some(i),
            _ => {}
        }
    }
    None
}

/// Index of the closing quote of a value whose opening quote was just consumed.
fn end_of_quoted(quoted: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in quoted.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return Some(i),
            _ => {}
        }
    }
    None
}

fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => text.parse().ok(),
    }
}

/// Escapes a label value for the text format.
pub fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// One exposition to merge and the labels to set on each of its samples (they replace a
/// label of the same name the sample carries: each source's series stay distinct).
pub struct Source<'a> {
    pub text: &'a str,
    pub labels: Vec<(String, String)>,
}

#[derive(Default)]
struct Family {
    help: Option<String>,
    kind: Option<String>,
    samples: Vec<String>,
}

/// The expositions merged: each family once (its first HELP and TYPE), its samples from
/// every source in source order, each labelled. Families keep their order of first
/// appearance.
pub fn federate(sources: &[Source<'_>]) -> String {
    let mut order: Vec<String> = Vec::new();
    let mut families: HashMap<String, Family> = HashMap::new();
    for source in sources {
        let mut current: Option<String> = None;
        for line in source.text.lines() {
            if let Some((keyword, family, _)) = comment(line) {
                let entry = family_entry(&mut order, &mut families, family);
                match keyword {
                    "HELP" if entry.help.is_none() => entry.help = Some(line.to_string()),
                    "TYPE" if entry.kind.is_none() => entry.kind = Some(line.to_string()),
                    _ => {}
                }
                current = Some(family.to_string());
                continue;
            }
            let Some(sample) = Sample::parse(line) else {
                continue;
            };
            let family = match &current {
                Some(family) if belongs(sample.name, family) => family.clone(),
                _ => sample.name.to_string(),
            };
            let labelled = with_labels(&sample, &source.labels);
            family_entry(&mut order, &mut families, &family)
                .samples
                .push(labelled);
        }
    }
    let mut out = String::new();
    for name in order {
        let Some(family) = families.remove(&name) else {
            continue;
        };
        if family.samples.is_empty() {
            continue;
        }
        for line in [family.help, family.kind].into_iter().flatten() {
            out.push_str(&line);
            out.push('\n');
        }
        for sample in family.samples {
            out.push_str(&sample);
            out.push('\n');
        }
    }
    out
}

fn family_entry<'m>(
    order: &mut Vec<String>,
    families: &'m mut HashMap<String, Family>,
    name: &str,
) -> &'m mut Family {
    if !families.contains_key(name) {
        order.push(name.to_string());
    }
    families.entry(name.to_string()).or_default()
}

/// `# HELP name text` / `# TYPE name kind` split; other comments are `None`.
fn comment(line: &str) -> Option<(&str, &str, &str)> {
    let rest = line.strip_prefix('#')?.trim_start();
    let (keyword, rest) = rest.split_once(char::is_whitespace)?;
    if keyword != "HELP" && keyword != "TYPE" {
        return None;
    }
    let rest = rest.trim_start();
    let (name, text) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    Some((keyword, name, text))
}

/// Whether a sample named `name` is part of `family` (histograms and summaries add
/// suffixes).
fn belongs(name: &str, family: &str) -> bool {
    name == family
        || name.strip_prefix(family).is_some_and(|suffix| {
            matches!(
                suffix,
                "_bucket" | "_sum" | "_count" | "_total" | "_created"
            )
        })
}

fn with_labels(sample: &Sample<'_>, extra: &[(String, String)]) -> String {
    let mut labels: Vec<String> = extra
        .iter()
        .map(|(name, value)| format!("{name}=\"{}\"", escape_label(value)))
        .collect();
    labels.extend(
        sample
            .label_pairs()
            .into_iter()
            .filter(|(name, _)| !extra.iter().any(|(e, _)| e == name))
            .map(|(name, quoted)| format!("{name}={quoted}")),
    );
    if labels.is_empty() {
        format!("{} {}", sample.name, sample.rest)
    } else {
        format!("{}{{{}}} {}", sample.name, labels.join(","), sample.rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_interpolate_within_the_bucket_over_a_window() {
        let text = |n: f64| {
            format!(
                "# TYPE x_seconds histogram\nx_seconds_bucket{{topic=\"a\",le=\"0.01\"}} {}\nx_seconds_bucket{{topic=\"a\",le=\"0.02\"}} {}\nx_seconds_bucket{{topic=\"a\",le=\"+Inf\"}} {}\nx_seconds_bucket{{topic=\"b\",le=\"0.01\"}} 7\n",
                n, 2.0 * n, 2.0 * n
            )
        };
        let before = histogram(&text(10.0), "x_seconds", &[("topic", "a")]);
        let after = histogram(&text(60.0), "x_seconds", &[("topic", "a")]);
        assert_eq!(
            after,
            vec![(0.01, 60.0), (0.02, 120.0), (f64::INFINITY, 120.0)]
        );
        let window = delta(&after, &before);
        assert_eq!(window[1], (0.02, 100.0));
        // Half of the 100 observations are at or below 0.01: the median is 0.01.
        assert!((quantile(&window, 0.5).unwrap() - 0.01).abs() < 1e-9);
        // The 75th lies halfway into the (0.01, 0.02] bucket.
        assert!((quantile(&window, 0.75).unwrap() - 0.015).abs() < 1e-9);
        assert_eq!(quantile(&delta(&before, &before), 0.5), None);
    }

    const SHIPPING: &str = r#"# HELP storefleet_records_in_total Input records consumed
# TYPE storefleet_records_in_total counter
storefleet_records_in_total{instance="0",processor="shipping",topic="orders.order-placed.v1"} 120
storefleet_records_in_total{instance="0",processor="shipping",topic="other"} 3
# HELP storefleet_commit_seconds Offset commit latency
# TYPE storefleet_commit_seconds histogram
storefleet_commit_seconds_bucket{instance="0",processor="shipping",le="0.0005"} 1
storefleet_commit_seconds_bucket{instance="0",processor="shipping",le="+Inf"} 4
storefleet_commit_seconds_sum{instance="0",processor="shipping"} 0.01
storefleet_commit_seconds_count{instance="0",processor="shipping"} 4
"#;

    const CHECKOUT: &str = r#"# HELP storefleet_checkout_sagas_stuck_total Sagas stuck
# TYPE storefleet_checkout_sagas_stuck_total counter
storefleet_checkout_sagas_stuck_total 2
# HELP storefleet_records_in_total Input records consumed
# TYPE storefleet_records_in_total counter
storefleet_records_in_total{instance="1",processor="checkout",topic="a \"quoted\" {topic}"} 7
"#;

    #[test]
    fn sums_a_metric_over_its_label_sets() {
        assert_eq!(sum(SHIPPING, "storefleet_records_in_total"), Some(123.0));
        assert_eq!(sum(CHECKOUT, "storefleet_records_in_total"), Some(7.0));
        assert_eq!(
            sum(CHECKOUT, "storefleet_checkout_sagas_stuck_total"),
            Some(2.0)
        );
        assert_eq!(sum(SHIPPING, "storefleet_checkout_sagas_stuck_total"), None);
        // A prefix of another name is not that name.
        assert_eq!(sum(SHIPPING, "storefleet_commit_seconds"), None);
        assert_eq!(sum(SHIPPING, "storefleet_commit_seconds_count"), Some(4.0));
    }

    #[test]
    fn garbage_is_skipped() {
        let text = "not a metric line at all {\n{}\nx{a=\"1\"} notanumber\ny 5\n";
        assert_eq!(sum(text, "y"), Some(5.0));
        assert_eq!(sum(text, "x"), None);
        assert_eq!(sum("", "y"), None);
    }

    #[test]
    fn federation_merges_families_and_adds_missing_labels() {
        let merged = federate(&[
            Source {
                text: SHIPPING,
                labels: vec![
                    ("processor".into(), "shipping".into()),
                    ("instance".into(), "0".into()),
                ],
            },
            Source {
                text: CHECKOUT,
                labels: vec![
                    ("processor".into(), "checkout".into()),
                    ("instance".into(), "1".into()),
                ],
            },
        ]);
        let lines: Vec<&str> = merged.lines().collect();
        // Each family's TYPE exactly once, even though both sources declare records_in.
        let types = lines
            .iter()
            .filter(|l| l.starts_with("# TYPE storefleet_records_in_total"))
            .count();
        assert_eq!(types, 1, "{merged}");
        // The records_in family holds both sources' samples, right after its TYPE line.
        let at = lines
            .iter()
            .position(|l| l.starts_with("# TYPE storefleet_records_in_total"))
            .unwrap();
        assert!(lines[at + 1].starts_with("storefleet_records_in_total{"));
        assert!(lines[at + 2].starts_with("storefleet_records_in_total{"));
        assert!(lines[at + 3].contains("processor=\"checkout\""), "{merged}");
        // The source's labels come first and replace the sample's own of the same name.
        assert_eq!(
            lines[at + 1],
            "storefleet_records_in_total{processor=\"shipping\",instance=\"0\",topic=\"orders.order-placed.v1\"} 120"
        );
        // An unlabelled sample gets the source's labels; braces in quotes survive.
        assert!(merged.contains(
            "storefleet_checkout_sagas_stuck_total{processor=\"checkout\",instance=\"1\"} 2"
        ));
        assert!(
            merged.contains(r#"topic="a \"quoted\" {topic}"} 7"#),
            "{merged}"
        );
        // Histogram series stay in their family.
        let hist = lines
            .iter()
            .position(|l| l.starts_with("# TYPE storefleet_commit_seconds"))
            .unwrap();
        assert!(lines[hist + 1..hist + 5]
            .iter()
            .all(|l| l.starts_with("storefleet_commit_seconds_")));
        // The merged text reads back with the same sums.
        assert_eq!(sum(&merged, "storefleet_records_in_total"), Some(130.0));
    }

    #[test]
    fn escapes_label_values() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
