//! `GET /v1/search`'s decisions, free of I/O. The handler (`api.rs`) does the I/O in this
//! order, calling these:
//!
//! 1. [`parse_query`] on the raw query string: the search service's own rules, checked here
//!    so a bad request costs no call (400 `empty_query`, `query_too_long`,
//!    `invalid_parameter`, `page_out_of_range`; the storefront's `invalid_id` for `user_id`).
//!    The storefront decodes the query itself, so no bytes (`%FF`, a word where a number
//!    goes, a parameter given twice) make anything but one of those 400s.
//! 2. The search service's replicas, in [`replica_order`] from a start that moves by one per
//!    request, each try within [`try_timeout`] of what is left of [`budget`]: the first that
//!    answers wins ([`classify`]). A refusal of the request (a 400 or 422 with the service's
//!    error body: it also refuses what only it can judge, such as an unclosed quote) is the
//!    shopper's, answered with its status and code. Anything else (5xx, another 4xx, a
//!    timeout, no connection, a body that is not an answer) is that replica's failure: the
//!    next one is tried.
//! 3. When none answered: the catalog's title search, shaped by [`catalog_answer`] (marked
//!    `"degraded": ["search"]`), with the same `hits` a service answer has, so clients read
//!    `hits` either way.
//! 4. Either way, each hit's `image_url` is its product's first image shown on the product
//!    page ([`crate::images::gallery`]: passed by image-quality at its current URL), or null;
//!    never the index's unchecked URL ([`checked_thumbnails`]). For a service answer that is
//!    one catalog query (the hits' image rows) beside one pipelined Redis round trip (their
//!    verdicts), within the search budget; when either fails no hit has an image and the
//!    answer is marked `"degraded": ["images"]`.
//!
//! The handler's I/O is covered by the stack test `tests/storefront.rs`.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde_json::{json, Value};

use crate::domain::{self, price_to_minor, Product, ProductView, Rejection};
use crate::images::Gallery;

/// Longest query, in characters (after trimming).
pub const MAX_QUERY_CHARS: usize = 200;
/// Longest category or brand filter, in characters.
pub const MAX_FILTER_CHARS: usize = 200;
pub const DEFAULT_PER_PAGE: u32 = 20;
pub const MAX_PER_PAGE: u32 = 100;
/// The deepest a page may reach into the results: `page × per_page`.
pub const MAX_DEPTH: u64 = 1_000;

/// The parameters `/v1/search` reads; any other is ignored. `limit` is `per_page`'s former
/// name.
const PARAMETERS: [&str; 11] = [
    "q",
    "category",
    "brand",
    "min_price",
    "max_price",
    "in_stock",
    "sort",
    "page",
    "per_page",
    "limit",
    "user_id",
];

/// Longest refusal message passed on from the service, in characters.
const MAX_MESSAGE_CHARS: usize = 300;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    Relevance,
    PriceAsc,
    PriceDesc,
    Newest,
}

impl Sort {
    const ALL: [Sort; 4] = [
        Sort::Relevance,
        Sort::PriceAsc,
        Sort::PriceDesc,
        Sort::Newest,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Sort::Relevance => "relevance",
            Sort::PriceAsc => "price_asc",
            Sort::PriceDesc => "price_desc",
            Sort::Newest => "newest",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// A valid search request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchRequest {
    /// What to search for: trimmed, 1..=[`MAX_QUERY_CHARS`] characters.
    pub q: String,
    /// `q` as typed, passed on as is: the service reads a space after the last word as "this
    /// word is complete" (no prefix match).
    pub q_as_typed: String,
    pub category: Option<String>,
    pub brand: Option<String>,
    /// Price bounds in minor units of the shop currency (not negative, min ≤ max).
    pub min_price_minor: Option<i64>,
    pub max_price_minor: Option<i64>,
    pub in_stock: Option<bool>,
    /// `None`: the service's default (relevance).
    pub sort: Option<Sort>,
    /// From 1; `page × per_page` ≤ [`MAX_DEPTH`].
    pub page: u32,
    /// 1..=[`MAX_PER_PAGE`].
    pub per_page: u32,
    /// Whose search it is (recorded as an interaction); a valid token.
    pub user_id: Option<String>,
}

impl SearchRequest {
    /// Results skipped before this page.
    pub fn offset(&self) -> u64 {
        u64::from(self.page - 1) * u64::from(self.per_page)
    }

    /// The search service's query parameters, in a fixed order.
    pub fn service_params(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![("q", self.q_as_typed.clone())];
        if let Some(c) = &self.category {
            out.push(("category", c.clone()));
        }
        if let Some(b) = &self.brand {
            out.push(("brand", b.clone()));
        }
        if let Some(m) = self.min_price_minor {
            out.push(("min_price", minor_to_price(m)));
        }
        if let Some(m) = self.max_price_minor {
            out.push(("max_price", minor_to_price(m)));
        }
        if let Some(s) = self.in_stock {
            out.push(("in_stock", s.to_string()));
        }
        if let Some(s) = self.sort {
            out.push(("sort", s.as_str().to_string()));
        }
        out.push(("page", self.page.to_string()));
        out.push(("per_page", self.per_page.to_string()));
        out
    }
}

fn invalid(message: impl Into<String>) -> Rejection {
    Rejection::new("invalid_parameter", message)
}

/// One component of a query string, decoded as a form does (`+` is a space, `%XX` a byte;
/// a `%` not followed by two hex digits stands for itself); `None` if the bytes are not
/// UTF-8.
fn decode(component: &str) -> Option<String> {
    let bytes = component.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    let hex = |at: usize| bytes.get(at).and_then(|b| (*b as char).to_digit(16));
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (hex(i + 1), hex(i + 2)) {
                (Some(high), Some(low)) => {
                    out.push((high * 16 + low) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// The raw query string (`None`: the URL has none) as a search request, or why not.
pub fn parse_query(raw: Option<&str>) -> Result<SearchRequest, Rejection> {
    let mut given: BTreeMap<&'static str, String> = BTreeMap::new();
    for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        // A key that is not UTF-8 names none of ours: ignored like any unknown parameter.
        let Some(key) = decode(key) else { continue };
        let Some(name) = PARAMETERS.into_iter().find(|p| *p == key) else {
            continue;
        };
        let value = decode(value).ok_or_else(|| invalid(format!("{name} is not UTF-8 text")))?;
        if given.insert(name, value).is_some() {
            return Err(invalid(format!("{name} is given more than once")));
        }
    }
    let user_id = given.remove("user_id");
    // Empty filters are absent ones (a form submits its empty fields); an empty q is not.
    let mut take = |name: &str| given.remove(name).filter(|v| !v.is_empty());

    let q_as_typed = take("q").unwrap_or_default();
    let q = q_as_typed.trim();
    if q.is_empty() {
        return Err(Rejection::new(
            "empty_query",
            "q must name what to search for",
        ));
    }
    if q.chars().count() > MAX_QUERY_CHARS {
        return Err(Rejection::new(
            "query_too_long",
            format!("q must be at most {MAX_QUERY_CHARS} characters"),
        ));
    }
    if let Some(user) = &user_id {
        domain::check_token("user_id", user)?;
    }
    let filter = |name: &str, value: Option<String>| -> Result<Option<String>, Rejection> {
        let value = value
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty());
        match value {
            Some(v) if v.chars().count() > MAX_FILTER_CHARS => Err(invalid(format!(
                "{name} must be at most {MAX_FILTER_CHARS} characters"
            ))),
            v => Ok(v),
        }
    };
    let category = filter("category", take("category"))?;
    let brand = filter("brand", take("brand"))?;
    let price = |name: &str, value: Option<String>| -> Result<Option<i64>, Rejection> {
        let Some(v) = value else { return Ok(None) };
        let v = v.trim();
        if v.starts_with('-') {
            return Err(invalid(format!("{name} must not be negative")));
        }
        price_to_minor(v).map(Some).ok_or_else(|| {
            invalid(format!(
                "{name} must be an amount in the shop currency, like 10.50"
            ))
        })
    };
    let min_price_minor = price("min_price", take("min_price"))?;
    let max_price_minor = price("max_price", take("max_price"))?;
    if let (Some(min), Some(max)) = (min_price_minor, max_price_minor) {
        if min > max {
            return Err(invalid("min_price must not be above max_price"));
        }
    }
    let in_stock = match take("in_stock").as_deref() {
        None => None,
        Some("true" | "1") => Some(true),
        Some("false" | "0") => Some(false),
        Some(_) => return Err(invalid("in_stock must be true or false")),
    };
    let sort = match take("sort") {
        None => None,
        Some(s) => Some(Sort::parse(&s).ok_or_else(|| {
            invalid("sort must be one of relevance, price_asc, price_desc, newest")
        })?),
    };
    let page = match take("page") {
        None => 1,
        Some(p) => p
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|p| *p >= 1)
            .ok_or_else(|| invalid("page must be a whole number from 1"))?,
    };
    let size = |name: &str, value: String| {
        value
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_PER_PAGE).contains(n))
            .ok_or_else(|| invalid(format!("{name} must be between 1 and {MAX_PER_PAGE}")))
    };
    let per_page = take("per_page").map(|v| size("per_page", v)).transpose()?;
    let limit = take("limit").map(|v| size("limit", v)).transpose()?;
    let per_page = match (per_page, limit) {
        (Some(a), Some(b)) if a != b => {
            return Err(invalid(
                "per_page and limit (its former name) differ: give one of them",
            ))
        }
        (Some(n), _) | (None, Some(n)) => n,
        (None, None) => DEFAULT_PER_PAGE,
    };
    if u64::from(page) * u64::from(per_page) > MAX_DEPTH {
        return Err(Rejection::new(
            "page_out_of_range",
            format!("page × per_page must be at most {MAX_DEPTH}: refine the search instead"),
        ));
    }
    Ok(SearchRequest {
        q: q.to_string(),
        q_as_typed: q_as_typed.clone(),
        category,
        brand,
        min_price_minor,
        max_price_minor,
        in_stock,
        sort,
        page,
        per_page,
        user_id,
    })
}

/// An amount in minor units as the shop currency's decimal text (`1050` → `10.50`).
pub fn minor_to_price(minor: i64) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let m = minor.unsigned_abs();
    format!("{sign}{}.{:02}", m / 100, m % 100)
}

/// A replica's search endpoint (`{base}/search`) from its base URL, or why it is not one.
pub fn endpoint(base: &str) -> Result<reqwest::Url, String> {
    let mut url = reqwest::Url::parse(base).map_err(|e| format!("search URL {base:?}: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || !url.has_host() {
        return Err(format!("search URL {base:?} is not an http(s) URL"));
    }
    url.set_query(None);
    url.set_fragment(None);
    url.path_segments_mut()
        .map_err(|()| format!("search URL {base:?} has no path"))?
        .pop_if_empty()
        .push("search");
    Ok(url)
}

/// The service's URL for `request` at a replica's endpoint.
pub fn service_url(endpoint: &reqwest::Url, request: &SearchRequest) -> reqwest::Url {
    let mut url = endpoint.clone();
    url.query_pairs_mut().extend_pairs(request.service_params());
    url
}

/// The replicas to try, by index, for a request whose turn is `start`: all of them once,
/// from `start`'s replica on. Successive requests start one replica further, so the load
/// spreads evenly and a dead replica costs each request at most one try.
pub fn replica_order(start: usize, replicas: usize) -> impl Iterator<Item = usize> {
    let first = start.checked_rem(replicas).unwrap_or(0);
    (0..replicas).map(move |i| (first + i) % replicas)
}

/// The time all of a request's tries may take together: two tries' worth.
pub fn budget(per_try: Duration) -> Duration {
    per_try.saturating_mul(2)
}

/// The time the next try may take with `left` of the budget: at most `per_try`; `None`
/// when what is left is too short for a try (under a millisecond).
pub fn try_timeout(per_try: Duration, left: Duration) -> Option<Duration> {
    let t = per_try.min(left);
    (t >= Duration::from_millis(1)).then_some(t)
}

/// What one try of one replica came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    /// The service answered: the storefront's answer ([`service_answer`]).
    Answered(Value),
    /// The service refused the request itself (the same at every replica): the shopper
    /// gets this refusal.
    Refused(Refusal),
    /// This replica failed, for this reason (a metric label): try the next.
    Failed(&'static str),
}

/// Why a try failed, for tries that got no answer at all.
pub const TIMEOUT: &str = "timeout";
pub const UNREACHABLE: &str = "unreachable";

/// The service's refusal of a request, passed on to the shopper as it came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// 400 or 422.
    pub status: u16,
    /// The service's code (`empty_query`, `query_syntax`, …): a snake_case token.
    pub code: String,
    pub message: String,
}

/// A replica's answer: its status and body.
pub fn classify(status: u16, body: &[u8]) -> Attempt {
    match status {
        200..=299 => serde_json::from_slice(body)
            .ok()
            .and_then(service_answer)
            .map_or(Attempt::Failed("bad_answer"), Attempt::Answered),
        // Another 4xx (a wrong path, a proxy's 429) or a 400 without the service's error
        // body says nothing about the request: the replica is failing.
        400 | 422 => refusal(status, body).map_or(Attempt::Failed("status"), Attempt::Refused),
        _ => Attempt::Failed("status"),
    }
}

/// `{"error": {"code": <a snake_case token>, "message": …}}`.
fn refusal(status: u16, body: &[u8]) -> Option<Refusal> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let code = v["error"]["code"].as_str()?;
    let token = (1..=64).contains(&code.len())
        && code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !token {
        return None;
    }
    let message: String = v["error"]["message"]
        .as_str()
        .unwrap_or("the search service refused the request")
        .chars()
        .take(MAX_MESSAGE_CHARS)
        .collect();
    Some(Refusal {
        status,
        code: code.to_string(),
        message,
    })
}

/// The storefront's answer from the service's body: its fields, with `"source": "search"`
/// and `degraded` (the service's own, e.g. a shard that did not answer; `[]` if it names
/// none). `None` if the body is not an answer (an object with a `hits` array).
pub fn service_answer(body: Value) -> Option<Value> {
    let Value::Object(mut body) = body else {
        return None;
    };
    if !body.get("hits").is_some_and(Value::is_array) {
        return None;
    }
    let degraded: Vec<Value> = match body.remove("degraded") {
        Some(Value::Array(items)) => items.into_iter().filter(Value::is_string).collect(),
        _ => Vec::new(),
    };
    body.insert("source".into(), "search".into());
    body.insert("degraded".into(), Value::Array(degraded));
    Some(Value::Object(body))
}

/// A catalog product in the shape of a service hit; what the catalog does not know (stock,
/// score, highlights) is null or empty. Its `image_url` is the first image shown on its page.
pub fn catalog_hit(p: &Product, gallery: &Gallery) -> Value {
    json!({
        "id": p.id,
        "sku": p.sku,
        "title": p.title,
        "brand": p.brand,
        "category": p.category,
        "price": minor_to_price(p.price_minor),
        "price_minor": p.price_minor,
        "in_stock": null,
        "available_quantity": null,
        "image_url": gallery.images.first().map(|i| &i.url),
        "updated_at": null,
        "score": null,
        "highlights": {},
    })
}

/// The answer from the catalog's title search when no replica answered: the products as
/// `results` (as before, with only their shown images) and as `hits`. `galleries` are the
/// products' shown images, in the products' order.
pub fn catalog_answer(
    request: &SearchRequest,
    products: &[Product],
    galleries: &[Gallery],
) -> Value {
    let none = Gallery::default();
    let gallery = |i: usize| galleries.get(i).unwrap_or(&none);
    let results: Vec<ProductView<'_>> = products
        .iter()
        .enumerate()
        .map(|(i, p)| ProductView::new(p, gallery(i).clone()))
        .collect();
    let hits: Vec<Value> = products
        .iter()
        .enumerate()
        .map(|(i, p)| catalog_hit(p, gallery(i)))
        .collect();
    json!({
        "source": "catalog",
        "query": request.q,
        "page": request.page,
        "per_page": request.per_page,
        "results": results,
        "hits": hits,
        "degraded": ["search"],
    })
}

/// The ids of an answer's hits, in order (a hit without a string id is left out).
pub fn hit_ids(answer: &Value) -> Vec<String> {
    answer["hits"]
        .as_array()
        .map(|hits| {
            hits.iter()
                .filter_map(|h| h["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Replaces each hit's `image_url` (the index's, from `products.image_urls`: unchecked) with
/// its product's first shown image (`thumbnails`: product id → URL), or null. `None`: the
/// images could not be read, so no hit has one and the answer says `degraded: images`.
pub fn checked_thumbnails(answer: &mut Value, thumbnails: Option<&HashMap<String, String>>) {
    if let Some(hits) = answer.get_mut("hits").and_then(Value::as_array_mut) {
        for hit in hits.iter_mut().filter_map(Value::as_object_mut) {
            let url = thumbnails
                .zip(hit.get("id").and_then(Value::as_str))
                .and_then(|(t, id)| t.get(id));
            hit.insert(
                "image_url".into(),
                url.map_or(Value::Null, |u| u.as_str().into()),
            );
        }
    }
    if thumbnails.is_none() {
        degrade(answer, "images");
    }
}

/// Adds `what` to the answer's `degraded` list.
pub fn degrade(answer: &mut Value, what: &str) {
    if let Some(list) = answer.get_mut("degraded").and_then(Value::as_array_mut) {
        if !list.iter().any(|d| d == what) {
            list.push(what.into());
        }
    } else if let Some(object) = answer.as_object_mut() {
        object.insert("degraded".into(), json!([what]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::{self, ImageRow, Verdict};

    fn parse(raw: &str) -> Result<SearchRequest, Rejection> {
        parse_query(Some(raw))
    }

    fn code(raw: &str) -> &'static str {
        parse(raw).expect_err(raw).code
    }

    #[test]
    fn a_plain_query_takes_the_defaults() {
        let r = parse("q=office+chair").unwrap();
        assert_eq!(
            r,
            SearchRequest {
                q: "office chair".into(),
                q_as_typed: "office chair".into(),
                category: None,
                brand: None,
                min_price_minor: None,
                max_price_minor: None,
                in_stock: None,
                sort: None,
                page: 1,
                per_page: DEFAULT_PER_PAGE,
                user_id: None,
            }
        );
        assert_eq!(r.offset(), 0);
        assert_eq!(
            r.service_params(),
            [
                ("q", "office chair".to_string()),
                ("page", "1".into()),
                ("per_page", "20".into())
            ]
        );
    }

    #[test]
    fn every_parameter_is_read_decoded_and_passed_on_normalised() {
        let r = parse(
            "q=%20red%20chair%20&category=Furniture%2FChairs&brand=Hon&min_price=10.5\
             &max_price=200&in_stock=true&sort=price_desc&page=3&per_page=25&user_id=u-1\
             &utm_source=mail",
        )
        .unwrap();
        assert_eq!(r.q, "red chair");
        assert_eq!(r.q_as_typed, " red chair ");
        assert_eq!(r.category.as_deref(), Some("Furniture/Chairs"));
        assert_eq!(
            (r.min_price_minor, r.max_price_minor),
            (Some(1050), Some(20_000))
        );
        assert_eq!((r.in_stock, r.sort), (Some(true), Some(Sort::PriceDesc)));
        assert_eq!((r.page, r.per_page, r.offset()), (3, 25, 50));
        assert_eq!(r.user_id.as_deref(), Some("u-1"));
        let params: Vec<(&str, String)> = r.service_params();
        assert_eq!(
            params,
            [
                ("q", " red chair ".to_string()),
                ("category", "Furniture/Chairs".into()),
                ("brand", "Hon".into()),
                ("min_price", "10.50".into()),
                ("max_price", "200.00".into()),
                ("in_stock", "true".into()),
                ("sort", "price_desc".into()),
                ("page", "3".into()),
                ("per_page", "25".into()),
            ]
        );
        // Empty filters are absent; limit is per_page's former name.
        let r = parse("q=lamp&category=&min_price=&sort=&limit=7").unwrap();
        assert_eq!((r.category, r.min_price_minor, r.sort), (None, None, None));
        assert_eq!(r.per_page, 7);
        assert_eq!(parse("q=lamp&limit=7&per_page=7").unwrap().per_page, 7);
        assert_eq!(parse("q=x&in_stock=false").unwrap().in_stock, Some(false));
        assert_eq!(parse("q=x&in_stock=1").unwrap().in_stock, Some(true));
        assert_eq!(parse("q=x&in_stock=0").unwrap().in_stock, Some(false));
        // Numbers may carry spaces, as the service reads them.
        let r = parse("q=x&page=+2+&per_page=%205&min_price=+3.5").unwrap();
        assert_eq!((r.page, r.per_page, r.min_price_minor), (2, 5, Some(350)));
    }

    #[test]
    fn the_query_must_say_something_within_200_characters() {
        for raw in [
            "",
            "q=",
            "q=+++",
            "q=%20%09",
            "category=Furniture",
            "qq=chair",
        ] {
            assert_eq!(code(raw), "empty_query", "{raw}");
        }
        assert_eq!(parse_query(None).unwrap_err().code, "empty_query");
        let long = "é".repeat(MAX_QUERY_CHARS);
        assert_eq!(parse(&format!("q={long}")).unwrap().q, long);
        let padded = parse(&format!("q=++{long}++")).unwrap();
        assert_eq!(padded.q, long);
        assert_eq!(padded.q_as_typed, format!("  {long}  "));
        assert_eq!(code(&format!("q={long}e")), "query_too_long");
    }

    #[test]
    fn bad_numbers_prices_sorts_and_sizes_are_invalid_parameters() {
        for raw in [
            "q=a&min_price=abc",
            "q=a&min_price=-1",
            "q=a&max_price=-0.01",
            "q=a&min_price=1.234",
            "q=a&min_price=.5",
            "q=a&max_price=1e3",
            "q=a&min_price=99999999999999999999",
            "q=a&min_price=20&max_price=10",
            "q=a&in_stock=yes",
            "q=a&in_stock=TRUE",
            "q=a&sort=cheapest",
            "q=a&page=0",
            "q=a&page=-1",
            "q=a&page=1.5",
            "q=a&page=00",
            "q=a&page=99999999999",
            "q=a&per_page=0",
            "q=a&per_page=101",
            "q=a&limit=abc",
            "q=a&limit=5&per_page=6",
            "q=a&q=b",
            "q=a&page=1&page=1",
            "q=%FF",
            "q=a&category=%C3%28",
            "q=a&brand=%80",
        ] {
            assert_eq!(code(raw), "invalid_parameter", "{raw}");
        }
        let long = "x".repeat(MAX_FILTER_CHARS + 1);
        assert_eq!(code(&format!("q=a&brand={long}")), "invalid_parameter");
        // The message names the parameter.
        assert!(parse("q=a&sort=x").unwrap_err().message.contains("sort"));
        assert!(parse("q=a&min_price=-3")
            .unwrap_err()
            .message
            .contains("negative"));
        // Equal bounds are a valid range.
        assert!(parse("q=a&min_price=10&max_price=10.00").is_ok());
        assert_eq!(code("q=a&user_id=not%20a%20token"), "invalid_id");
    }

    #[test]
    fn a_page_may_reach_result_1000_and_no_further() {
        assert_eq!(parse("q=a&page=10&per_page=100").unwrap().offset(), 900);
        assert_eq!(parse("q=a&page=50").unwrap().offset(), 980);
        assert_eq!(code("q=a&page=11&per_page=100"), "page_out_of_range");
        assert_eq!(code("q=a&page=51"), "page_out_of_range");
        assert_eq!(
            code("q=a&page=4294967295&per_page=100"),
            "page_out_of_range"
        );
        assert_eq!(parse("q=a&page=007").unwrap().page, 7);
        // An empty user_id is not an absent one.
        assert_eq!(code("q=a&user_id="), "invalid_id");
    }

    #[test]
    fn decoding_is_a_forms_and_stray_percents_stand_for_themselves() {
        assert_eq!(decode("a+b%2Bc").as_deref(), Some("a b+c"));
        assert_eq!(decode("100%").as_deref(), Some("100%"));
        assert_eq!(decode("%4").as_deref(), Some("%4"));
        assert_eq!(decode("%zz%41").as_deref(), Some("%zzA"));
        assert_eq!(decode("%e2%82%ac").as_deref(), Some("€"));
        assert_eq!(decode("%FF"), None);
        assert_eq!(decode("%C3"), None);
        assert_eq!(parse("q=50%25+off").unwrap().q, "50% off");
        // An encoded key is the parameter it spells; a key that is not UTF-8 is unknown.
        assert_eq!(parse("%71=desk").unwrap().q, "desk");
        assert_eq!(parse("q=desk&%FF=1").unwrap().q, "desk");
    }

    #[test]
    fn each_replica_is_asked_at_its_search_endpoint_with_the_normalised_parameters() {
        for (base, expected) in [
            ("http://127.0.0.1:9400", "http://127.0.0.1:9400/search"),
            ("http://127.0.0.1:9400/", "http://127.0.0.1:9400/search"),
            ("https://s.example/v2/", "https://s.example/v2/search"),
            ("http://s.example/v2?x=1#f", "http://s.example/v2/search"),
        ] {
            assert_eq!(endpoint(base).unwrap().as_str(), expected, "{base}");
        }
        for bad in ["ftp://s.example", "http//s", "", "mailto:a@b"] {
            assert!(endpoint(bad).is_err(), "{bad}");
        }
        let request =
            parse("q=50%25+off+%26+more&category=Office+Supplies/Paper&min_price=3").unwrap();
        let url = service_url(&endpoint("http://h:1").unwrap(), &request);
        assert_eq!(
            url.as_str(),
            "http://h:1/search?q=50%25+off+%26+more&category=Office+Supplies%2FPaper\
             &min_price=3.00&page=1&per_page=20"
        );
        let back: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert_eq!(back[0], ("q".into(), "50% off & more".into()));
    }

    #[test]
    fn replicas_are_tried_once_each_from_a_start_that_moves_per_request() {
        let order = |start| replica_order(start, 3).collect::<Vec<_>>();
        assert_eq!(order(0), [0, 1, 2]);
        assert_eq!(order(1), [1, 2, 0]);
        assert_eq!(order(5), [2, 0, 1]);
        // 2^64 - 1 is a multiple of 3.
        assert_eq!(order(usize::MAX), [0, 1, 2]);
        assert_eq!(replica_order(7, 1).collect::<Vec<_>>(), [0]);
        assert_eq!(replica_order(7, 0).count(), 0);
        // Successive starts begin at every replica equally often.
        let mut firsts = [0; 3];
        for start in 0..300 {
            firsts[replica_order(start, 3).next().unwrap()] += 1;
        }
        assert_eq!(firsts, [100, 100, 100]);
    }

    #[test]
    fn tries_share_a_budget_of_two_tries() {
        let per_try = Duration::from_millis(150);
        let budget = budget(per_try);
        assert_eq!(budget, Duration::from_millis(300));
        assert_eq!(try_timeout(per_try, budget), Some(per_try));
        assert_eq!(
            try_timeout(per_try, Duration::from_millis(40)),
            Some(Duration::from_millis(40))
        );
        assert_eq!(try_timeout(per_try, Duration::from_micros(900)), None);
        assert_eq!(try_timeout(per_try, Duration::ZERO), None);
    }

    fn body(v: Value) -> Vec<u8> {
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn an_answer_keeps_the_services_fields_and_its_degraded_shards() {
        let service = json!({
            "query": "chair", "total": 1, "page": 1, "per_page": 20,
            "hits": [{"id": "p1", "price": "12.34", "price_minor": 1234, "score": 1.5}],
            "facets": {"category": {"Furniture/Chairs": 1}},
            "degraded": ["shard:Technology", 7], "took_ms": 1.2, "cached": false,
        });
        let Attempt::Answered(a) = classify(200, &body(service)) else {
            panic!("an answer")
        };
        assert_eq!(a["source"], "search");
        assert_eq!(a["degraded"], json!(["shard:Technology"]));
        assert_eq!(a["hits"][0]["id"], "p1");
        assert_eq!(a["total"], 1);
        assert_eq!(a["facets"]["category"]["Furniture/Chairs"], 1);
        let Attempt::Answered(a) = classify(200, &body(json!({"hits": []}))) else {
            panic!("an answer")
        };
        assert_eq!(a["degraded"], json!([]));
    }

    #[test]
    fn the_services_refusals_are_the_shoppers_and_its_failures_the_replicas() {
        let refused = body(json!({"error": {"code": "page_out_of_range", "message": "too deep"}}));
        let refusal = |status: u16, code: &str, message: &str| {
            Attempt::Refused(Refusal {
                status,
                code: code.into(),
                message: message.into(),
            })
        };
        assert_eq!(
            classify(400, &refused),
            refusal(400, "page_out_of_range", "too deep")
        );
        // What only the service judges (an unclosed quote) is refused the same way.
        let syntax = body(json!({"error": {"code": "query_syntax", "message": "a quote"}}));
        assert_eq!(
            classify(400, &syntax),
            refusal(400, "query_syntax", "a quote")
        );
        let long =
            body(json!({"error": {"code": "invalid_parameter", "message": "m".repeat(999)}}));
        let Attempt::Refused(r) = classify(422, &long) else {
            panic!("refused")
        };
        assert_eq!((r.status, r.message.len()), (422, MAX_MESSAGE_CHARS));
        for (status, b) in [
            (500, refused.clone()),
            (503, b"overloaded".to_vec()),
            (404, b"Not Found".to_vec()),
            (
                404,
                body(json!({"error": {"code": "not_found", "message": "no route"}})),
            ),
            (
                429,
                body(json!({"error": {"code": "rate_limited", "message": "slow down"}})),
            ),
            (302, Vec::new()),
            (400, b"Bad Request".to_vec()),
            (
                400,
                body(json!({"error": {"code": "Not A Token", "message": "x"}})),
            ),
            (400, body(json!({"error": "flat"}))),
        ] {
            assert_eq!(classify(status, &b), Attempt::Failed("status"), "{status}");
        }
        for b in [
            b"<html>".to_vec(),
            Vec::new(),
            body(json!([{"id": "old-shape"}])),
            body(json!({"hits": "none"})),
            body(json!({"results": []})),
        ] {
            assert_eq!(classify(200, &b), Attempt::Failed("bad_answer"));
        }
    }

    fn product(id: &str, price_minor: i64, images: &[&str]) -> Product {
        Product {
            id: id.into(),
            sku: format!("SKU-{id}"),
            title: format!("Product {id}"),
            description: None,
            category: Some("Furniture/Chairs".into()),
            brand: None,
            price_minor,
            currency: "USD".into(),
            seller: "acme".into(),
            image_rows: images
                .iter()
                .enumerate()
                .map(|(n, url)| ImageRow {
                    id: format!("{id}-img{n}"),
                    url: url.to_string(),
                    position: n as i32,
                })
                .collect(),
        }
    }

    fn passed(url: &str) -> String {
        Verdict {
            occurred_at: 1,
            passed: true,
            tiers: None,
            url: url.into(),
        }
        .encode()
    }

    #[test]
    fn the_catalogs_answer_has_results_as_before_and_the_same_products_as_hits() {
        let request = parse("q=chair&page=2&per_page=5").unwrap();
        let products = [
            product("p1", 1205, &["a.jpg", "b.jpg", "c.jpg"]),
            product("p2", 7, &["d.jpg"]),
        ];
        // p1's first image is not passed (yet): its second is the thumbnail. p2 has none.
        let verdicts: HashMap<String, String> = [
            ("p1-img1".to_string(), passed("b.jpg")),
            ("p1-img2".to_string(), passed("c.jpg")),
        ]
        .into();
        let galleries: Vec<Gallery> = products
            .iter()
            .map(|p| images::gallery(&p.image_rows, &verdicts))
            .collect();
        let a = catalog_answer(&request, &products, &galleries);
        assert_eq!(a["source"], "catalog");
        assert_eq!(a["degraded"], json!(["search"]));
        assert_eq!(
            (a["page"].as_u64(), a["per_page"].as_u64()),
            (Some(2), Some(5))
        );
        assert_eq!(a["results"][1]["sku"], "SKU-p2");
        assert_eq!(a["results"][0]["image_urls"], json!(["b.jpg", "c.jpg"]));
        assert_eq!(a["results"][1]["image_urls"], json!([]));
        assert_eq!(a["results"][1]["images_pending_review"], true);
        assert!(a["results"][0].get("image_rows").is_none());
        let hits = a["hits"].as_array().unwrap();
        assert_eq!(hits.len(), 2);
        assert_eq!(
            (
                hits[0]["id"].as_str(),
                hits[0]["price"].as_str(),
                hits[0]["price_minor"].as_i64()
            ),
            (Some("p1"), Some("12.05"), Some(1205))
        );
        assert_eq!(hits[0]["image_url"], "b.jpg");
        assert_eq!(hits[0]["category"], "Furniture/Chairs");
        assert!(hits[1]["image_url"].is_null() && hits[1]["in_stock"].is_null());
        assert_eq!(hits[1]["price"], "0.07");
    }

    #[test]
    fn a_service_answers_thumbnails_are_the_first_shown_images_or_null() {
        let answer = || {
            json!({
                "hits": [
                    {"id": "p1", "image_url": "unchecked-1.jpg"},
                    {"id": "p2", "image_url": "unchecked-2.jpg"},
                    {"image_url": "no-id.jpg"},
                ],
                "degraded": ["shard:Technology"],
            })
        };
        let mut a = answer();
        assert_eq!(hit_ids(&a), ["p1", "p2"]);
        let thumbnails: HashMap<String, String> = [("p1".into(), "b.jpg".into())].into();
        checked_thumbnails(&mut a, Some(&thumbnails));
        let urls: Vec<&Value> = a["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| &h["image_url"])
            .collect();
        assert_eq!(urls, [&json!("b.jpg"), &Value::Null, &Value::Null]);
        assert_eq!(a["degraded"], json!(["shard:Technology"]));

        let mut a = answer();
        checked_thumbnails(&mut a, None);
        assert!(a["hits"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["image_url"].is_null()));
        assert_eq!(a["degraded"], json!(["shard:Technology", "images"]));
        degrade(&mut a, "images");
        assert_eq!(a["degraded"], json!(["shard:Technology", "images"]));
        let mut bare = json!({"hits": []});
        degrade(&mut bare, "images");
        assert_eq!(bare["degraded"], json!(["images"]));
    }

    #[test]
    fn amounts_print_with_two_decimals() {
        assert_eq!(minor_to_price(0), "0.00");
        assert_eq!(minor_to_price(1050), "10.50");
        assert_eq!(minor_to_price(-5), "-0.05");
        assert_eq!(price_to_minor(&minor_to_price(123_456)), Some(123_456));
    }
}
