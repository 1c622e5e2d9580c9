//! A search request: parsed and validated from the raw query string, before any index is
//! touched. Pure: whatever bytes arrive, the answer is a [`SearchRequest`] or a
//! [`Rejection`] with a code (a 400), never a panic.
//!
//! Query text: words and `"quoted phrases"`. Every word must match (in title, description,
//! brand or category); a word may match with typos by its length (none under 5 letters, one
//! edit up to 8, two beyond); the last word also matches as a prefix unless the text ends
//! with a space (as-you-type).

use std::fmt::Write as _;

/// Longest query text accepted, in characters.
pub const MAX_QUERY_CHARS: usize = 200;
/// Most words and phrases in one query.
pub const MAX_TERMS: usize = 16;
/// Words longer than this are not indexed (the analyzer drops them), so not searched.
pub const MAX_WORD_CHARS: usize = 40;
/// Deepest result reachable by paging: page × per_page.
pub const MAX_DEPTH: u32 = 1_000;
pub const MAX_PER_PAGE: u32 = 100;
/// Shortest last word matched as a prefix.
pub const MIN_PREFIX_CHARS: usize = 2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: &'static str,
    pub message: String,
}

fn reject(code: &'static str, message: impl Into<String>) -> Rejection {
    Rejection {
        code,
        message: message.into(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sort {
    #[default]
    Relevance,
    PriceAsc,
    PriceDesc,
    Newest,
}

impl Sort {
    pub fn as_str(self) -> &'static str {
        match self {
            Sort::Relevance => "relevance",
            Sort::PriceAsc => "price_asc",
            Sort::PriceDesc => "price_desc",
            Sort::Newest => "newest",
        }
    }
}

/// One part of the query text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Term {
    Word {
        /// Lowercased as typed (the index analyzer stems it).
        text: String,
        /// Edits allowed (by the word's length).
        typos: u8,
        /// Also match words starting with it (the last word, as-you-type).
        prefix: bool,
    },
    /// Consecutive words.
    Phrase(Vec<String>),
}

/// Edits a word of `chars` letters may have and still match.
pub fn typos_for(chars: usize) -> u8 {
    match chars {
        0..=4 => 0,
        5..=8 => 1,
        _ => 2,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Filters {
    /// `Furniture/Chairs` (exact) or `Furniture` (the top-level category and all below).
    pub category: Option<String>,
    /// Exact brand, case-insensitive (lowercased here).
    pub brand: Option<String>,
    pub min_price_minor: Option<u64>,
    pub max_price_minor: Option<u64>,
    pub in_stock: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchRequest {
    /// The query text, trimmed.
    pub text: String,
    pub terms: Vec<Term>,
    pub filters: Filters,
    pub sort: Sort,
    /// 1-based.
    pub page: u32,
    pub per_page: u32,
}

impl SearchRequest {
    /// Results to collect from each shard to answer this page.
    pub fn depth(&self) -> usize {
        (self.page * self.per_page) as usize
    }

    pub fn offset(&self) -> usize {
        ((self.page - 1) * self.per_page) as usize
    }

    /// The same key for requests with the same answer (the cache key).
    pub fn cache_key(&self) -> String {
        let mut key = String::new();
        for term in &self.terms {
            match term {
                Term::Word { text, prefix, .. } => {
                    let _ = write!(key, "w:{text}{};", if *prefix { "*" } else { "" });
                }
                Term::Phrase(words) => {
                    let _ = write!(key, "p:{};", words.join(" "));
                }
            }
        }
        let f = &self.filters;
        let _ = write!(
            key,
            "|c:{:?}|b:{:?}|p:{:?}-{:?}|s:{:?}|{}|{}x{}",
            f.category,
            f.brand,
            f.min_price_minor,
            f.max_price_minor,
            f.in_stock,
            self.sort.as_str(),
            self.page,
            self.per_page
        );
        key
    }
}

/// Parses a raw URL query string (`q=...&page=2`), percent-decoding it here so that bytes
/// that are not UTF-8 get a 400, not a 5xx.
pub fn parse_query_string(raw: &str) -> Result<SearchRequest, Rejection> {
    let mut params: Vec<(String, String)> = Vec::new();
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = decode_component(name)?;
        let value = decode_component(value)?;
        params.push((name, value));
    }
    parse(params.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

fn decode_component(text: &str) -> Result<String, Rejection> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok());
                let Some(byte) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) else {
                    return Err(reject(
                        "invalid_encoding",
                        "a % in the query string is not followed by two hex digits",
                    ));
                };
                out.push(byte);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| reject("invalid_encoding", "the query string is not UTF-8"))
}

/// Parses decoded parameters. Unknown parameters are ignored (clients add tracking ones).
pub fn parse<'a>(
    params: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<SearchRequest, Rejection> {
    let mut text: Option<&str> = None;
    let mut filters = Filters::default();
    let mut sort = Sort::default();
    let mut page: u32 = 1;
    let mut per_page: u32 = 20;
    for (name, value) in params {
        match name {
            "q" => text = Some(value),
            "category" if !value.trim().is_empty() => {
                filters.category = Some(value.trim().to_string())
            }
            "brand" if !value.trim().is_empty() => {
                filters.brand = Some(value.trim().to_lowercase())
            }
            "min_price" if !value.is_empty() => filters.min_price_minor = Some(price(name, value)?),
            "max_price" if !value.is_empty() => filters.max_price_minor = Some(price(name, value)?),
            "in_stock" if !value.is_empty() => {
                filters.in_stock = Some(match value {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => {
                        return Err(reject(
                            "invalid_parameter",
                            "in_stock must be true or false",
                        ))
                    }
                })
            }
            "sort" if !value.is_empty() => {
                sort = match value {
                    "relevance" => Sort::Relevance,
                    "price_asc" => Sort::PriceAsc,
                    "price_desc" => Sort::PriceDesc,
                    "newest" => Sort::Newest,
                    _ => {
                        return Err(reject(
                            "invalid_parameter",
                            "sort must be relevance, price_asc, price_desc or newest",
                        ))
                    }
                }
            }
            "page" => page = number(name, value)?,
            "per_page" | "limit" => per_page = number(name, value)?,
            _ => {}
        }
    }
    if let (Some(lo), Some(hi)) = (filters.min_price_minor, filters.max_price_minor) {
        if lo > hi {
            return Err(reject("invalid_parameter", "min_price is above max_price"));
        }
    }
    if page == 0 {
        return Err(reject("invalid_parameter", "page starts at 1"));
    }
    if !(1..=MAX_PER_PAGE).contains(&per_page) {
        return Err(reject(
            "invalid_parameter",
            format!("per_page must be 1 to {MAX_PER_PAGE}"),
        ));
    }
    if page
        .checked_mul(per_page)
        .is_none_or(|depth| depth > MAX_DEPTH)
    {
        return Err(reject(
            "page_out_of_range",
            format!("results beyond the first {MAX_DEPTH} are not served: refine the query"),
        ));
    }
    let raw = text.unwrap_or_default();
    // A space after the last word means it is complete (no prefix match).
    let ends_open = raw.chars().last().is_some_and(char::is_alphanumeric);
    let text = raw.trim();
    if text.is_empty() {
        return Err(reject("empty_query", "q is empty"));
    }
    if text.chars().count() > MAX_QUERY_CHARS {
        return Err(reject(
            "query_too_long",
            format!("q is longer than {MAX_QUERY_CHARS} characters"),
        ));
    }
    let terms = terms(text, ends_open)?;
    Ok(SearchRequest {
        text: text.to_string(),
        terms,
        filters,
        sort,
        page,
        per_page,
    })
}

fn number(name: &str, value: &str) -> Result<u32, Rejection> {
    value.trim().parse().map_err(|_| {
        reject(
            "invalid_parameter",
            format!("{name} must be a whole number"),
        )
    })
}

/// Minor units of a decimal price (`12`, `12.5`, `12.50`).
fn price(name: &str, value: &str) -> Result<u64, Rejection> {
    let bad = || {
        reject(
            "invalid_parameter",
            format!("{name} must be a price like 12.50"),
        )
    };
    let value = value.trim();
    let (units, cents) = value.split_once('.').unwrap_or((value, ""));
    if units.is_empty() || units.len() > 10 || cents.len() > 2 {
        return Err(bad());
    }
    if !units.bytes().all(|b| b.is_ascii_digit()) || !cents.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let units: u64 = units.parse().map_err(|_| bad())?;
    let cents: u64 = format!("{cents:0<2}").parse().map_err(|_| bad())?;
    Ok(units * 100 + cents)
}

/// Words (alphanumeric runs) and quoted phrases of `text`.
fn terms(text: &str, ends_open: bool) -> Result<Vec<Term>, Rejection> {
    if text.matches('"').count() % 2 == 1 {
        return Err(reject("query_syntax", "a quoted phrase is not closed"));
    }
    let mut out = Vec::new();
    for (i, part) in text.split('"').enumerate() {
        let words = words(part);
        if i % 2 == 1 {
            match words.len() {
                0 => {}
                1 => out.push(word(words.into_iter().next().unwrap_or_default(), false)),
                _ => out.push(Term::Phrase(words)),
            }
        } else {
            out.extend(words.into_iter().map(|w| word(w, false)));
        }
    }
    if out.is_empty() {
        return Err(reject(
            "empty_query",
            "q has no letters or digits to search for",
        ));
    }
    if out.len() > MAX_TERMS {
        return Err(reject(
            "query_too_long",
            format!("q has more than {MAX_TERMS} words"),
        ));
    }
    // The last word typed, outside quotes, is still being typed.
    if ends_open {
        if let Some(Term::Word { text, prefix, .. }) = out.last_mut() {
            *prefix = text.chars().count() >= MIN_PREFIX_CHARS;
        }
    }
    Ok(out)
}

fn word(text: String, prefix: bool) -> Term {
    let typos = typos_for(text.chars().count());
    Term::Word {
        text,
        typos,
        prefix,
    }
}

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty() && w.chars().count() <= MAX_WORD_CHARS)
        .map(str::to_lowercase)
        .collect()
}

/// Edit distance with adjacent transpositions costing one (optimal string alignment), capped:
/// any distance above `cap` is reported as `cap + 1`.
pub fn edit_distance(a: &str, b: &str, cap: u8) -> u8 {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let cap = usize::from(cap);
    if a.len().abs_diff(b.len()) > cap {
        return (cap + 1) as u8;
    }
    let mut prev2: Vec<usize> = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut row = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        row[0] = i;
        let mut best = row[0];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (prev[j] + 1).min(row[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(prev2[j - 2] + 1);
            }
            row[j] = d;
            best = best.min(d);
        }
        if best > cap {
            return (cap + 1) as u8;
        }
        std::mem::swap(&mut prev2, &mut prev);
        std::mem::swap(&mut prev, &mut row);
    }
    prev[b.len()].min(cap + 1) as u8
}

/// How one analyzed query word matches analyzed text tokens (for highlighting).
#[derive(Debug, Clone)]
pub struct Matcher {
    /// (stemmed word, edits allowed, raw lowercase prefix if matched as a prefix)
    pub words: Vec<(String, u8, Option<String>)>,
}

impl Matcher {
    /// Does a text token (its stem and its lowercase raw form) match a query word?
    pub fn matches(&self, stem: &str, raw: &str) -> bool {
        self.words.iter().any(|(word, typos, prefix)| {
            stem == word
                || (*typos > 0 && edit_distance(stem, word, *typos) <= *typos)
                || prefix
                    .as_deref()
                    .is_some_and(|p| raw.starts_with(p) || stem.starts_with(p))
        })
    }
}

/// `text` with the given byte ranges wrapped in `<mark>`, HTML-escaped; cut to about `max`
/// characters around the first mark (with `…` where cut).
pub fn highlight(text: &str, marks: &[(usize, usize)], max: usize) -> String {
    let total = text.chars().count();
    let (start, end) = if total <= max {
        (0, text.len())
    } else {
        let first = marks.first().map(|m| m.0).unwrap_or(0);
        // Start a little before the first mark, on a char boundary.
        let lead = max / 4;
        let start_char = text[..first].chars().count().saturating_sub(lead);
        let start = text
            .char_indices()
            .nth(start_char)
            .map(|(i, _)| i)
            .unwrap_or(0);
        let end = text[start..]
            .char_indices()
            .nth(max)
            .map(|(i, _)| start + i)
            .unwrap_or(text.len());
        (start, end)
    };
    let mut out = String::new();
    if start > 0 {
        out.push('…');
    }
    let mut at = start;
    for &(from, to) in marks {
        if to <= at || from >= end {
            continue;
        }
        let from = from.max(at);
        let to = to.min(end);
        escape_into(&mut out, &text[at..from]);
        out.push_str("<mark>");
        escape_into(&mut out, &text[from..to]);
        out.push_str("</mark>");
        at = to;
    }
    escape_into(&mut out, &text[at..end]);
    if end < text.len() {
        out.push('…');
    }
    out
}

fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(q: &str) -> Result<SearchRequest, Rejection> {
        parse([("q", q)])
    }

    fn code(r: Result<SearchRequest, Rejection>) -> &'static str {
        r.err().map(|r| r.code).unwrap_or("ok")
    }

    #[test]
    fn typo_budget_grows_with_word_length() {
        assert_eq!([4, 5, 8, 9].map(typos_for), [0, 1, 1, 2]);
    }

    #[test]
    fn words_phrases_and_the_prefix_of_the_last_word() {
        let r = req(r#"hon "stacking chairs" round"#).unwrap();
        assert_eq!(
            r.terms,
            vec![
                Term::Word {
                    text: "hon".into(),
                    typos: 0,
                    prefix: false
                },
                Term::Phrase(vec!["stacking".into(), "chairs".into()]),
                Term::Word {
                    text: "round".into(),
                    typos: 1,
                    prefix: true
                },
            ]
        );
        let r = req("Bookcase ").unwrap();
        assert_eq!(
            r.terms,
            vec![Term::Word {
                text: "bookcase".into(),
                typos: 1,
                prefix: false
            }]
        );
        assert_eq!(
            req("x").unwrap().terms,
            vec![Term::Word {
                text: "x".into(),
                typos: 0,
                prefix: false
            }]
        );
    }

    #[test]
    fn bad_requests_get_codes() {
        assert_eq!(code(req("")), "empty_query");
        assert_eq!(code(req("   ")), "empty_query");
        assert_eq!(code(req("!!! ???")), "empty_query");
        assert_eq!(code(req(&"a".repeat(201))), "query_too_long");
        assert_eq!(code(req(&"ab ".repeat(17))), "query_too_long");
        assert_eq!(code(req("\"open phrase")), "query_syntax");
        assert_eq!(
            code(parse([("q", "a"), ("page", "0")])),
            "invalid_parameter"
        );
        assert_eq!(
            code(parse([("q", "a"), ("page", "-1")])),
            "invalid_parameter"
        );
        assert_eq!(
            code(parse([("q", "a"), ("per_page", "101")])),
            "invalid_parameter"
        );
        assert_eq!(
            code(parse([("q", "a"), ("page", "51")])),
            "page_out_of_range"
        );
        assert_eq!(
            code(parse([
                ("q", "a"),
                ("page", "4294967295"),
                ("per_page", "100")
            ])),
            "page_out_of_range"
        );
        assert_eq!(
            code(parse([("q", "a"), ("min_price", "1e3")])),
            "invalid_parameter"
        );
        assert_eq!(
            code(parse([("q", "a"), ("min_price", "-1")])),
            "invalid_parameter"
        );
        assert_eq!(
            code(parse([
                ("q", "a"),
                ("min_price", "5"),
                ("max_price", "4.99")
            ])),
            "invalid_parameter"
        );
        assert_eq!(
            code(parse([("q", "a"), ("sort", "cheap")])),
            "invalid_parameter"
        );
        assert_eq!(
            code(parse([("q", "a"), ("in_stock", "yes")])),
            "invalid_parameter"
        );
        assert_eq!(code(parse_query_string("q=%FF%FE")), "invalid_encoding");
        assert_eq!(code(parse_query_string("q=%G1")), "invalid_encoding");
    }

    #[test]
    fn filters_and_paging_parse() {
        let r = parse_query_string("q=chair&category=Furniture&brand=HON&min_price=10.5&max_price=99&in_stock=true&sort=price_desc&page=3&per_page=10&utm=x").unwrap();
        assert_eq!(
            r.filters,
            Filters {
                category: Some("Furniture".into()),
                brand: Some("hon".into()),
                min_price_minor: Some(1050),
                max_price_minor: Some(9900),
                in_stock: Some(true),
            }
        );
        assert_eq!(
            (r.sort, r.page, r.per_page, r.offset(), r.depth()),
            (Sort::PriceDesc, 3, 10, 20, 30)
        );
        assert_eq!(parse_query_string("q=a+b%20c").unwrap().text, "a b c");
    }

    #[test]
    fn the_cache_key_ignores_spelling_of_the_same_request() {
        let a = parse_query_string("q=Office++Chair&sort=relevance").unwrap();
        let b = parse_query_string("q=office%20chair").unwrap();
        assert_eq!(a.cache_key(), b.cache_key());
        let c = parse_query_string("q=office%20chair&page=2").unwrap();
        assert_ne!(a.cache_key(), c.cache_key());
    }

    #[test]
    fn edit_distance_counts_transpositions_once() {
        assert_eq!(edit_distance("chair", "chiar", 2), 1);
        assert_eq!(edit_distance("chair", "char", 2), 1);
        assert_eq!(edit_distance("bookcase", "bokcaes", 2), 2);
        assert_eq!(edit_distance("table", "stapler", 2), 3);
        assert_eq!(edit_distance("", "ab", 1), 2);
    }

    #[test]
    fn highlights_escape_and_cut() {
        let text = "Hon <Deluxe> Chair";
        assert_eq!(
            highlight(text, &[(13, 18)], 100),
            "Hon &lt;Deluxe&gt; <mark>Chair</mark>"
        );
        let long = format!("{} needle {}", "a".repeat(100), "b".repeat(100));
        let h = highlight(&long, &[(101, 107)], 40);
        assert!(h.starts_with('…') && h.ends_with('…'), "{h}");
        assert!(h.contains("<mark>needle</mark>"));
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_give_a_request_or_a_rejection(raw in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let text = String::from_utf8_lossy(&raw);
            let _ = parse_query_string(&text);
            let _ = parse([("q", text.as_ref())]);
        }
    }
}
