//! The tantivy side: the schema, the category shards, commits carrying the input positions
//! they cover, and queries over the shards.
//!
//! An index *generation* is a folder holding one tantivy index per shard
//! (`<root>/gen-<n>/<shard>/`). Shards are the configured top-level categories, `other` (any
//! category not configured) and `_unlisted` (products known only by their stock state, never
//! searched). Every commit commits all shards, in order, each with the same [`Payload`] (the
//! commit sequence and the next offset of every input partition). A crash between two
//! shards' commits leaves them at different sequences: [`Generation::open`] reports it as
//! torn with the oldest shard's payload. Commits only move positions forward, so replaying
//! from that oldest payload brings every lagging shard up, and the shards already past it
//! ignore what they have (every document is versioned); a product caught moving between two
//! shards is kept where its newer version is (see the indexer's `IndexState::open`).

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tantivy::collector::{Collector, Count, SegmentCollector, TopDocs};
use tantivy::columnar::StrColumn;
use tantivy::directory::MmapDirectory;
use tantivy::query::{
    BooleanQuery, BoostQuery, ConstScoreQuery, FuzzyTermQuery, Occur, PhraseQuery, Query,
    RangeQuery, TermQuery,
};
use tantivy::schema::{
    Field, IndexRecordOption, NumericOptions, Schema, TextFieldIndexing, TextOptions, Value, FAST,
    INDEXED, STORED, STRING,
};
use tantivy::tokenizer::{
    AsciiFoldingFilter, Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer,
    TextAnalyzer,
};
use tantivy::{
    DocAddress, DocId, Index, IndexReader, IndexWriter, Order, ReloadPolicy, Score, Searcher,
    SegmentOrdinal, SegmentReader, TantivyDocument, Term,
};
use thiserror::Error;

use crate::doc::{format_minor, Product};
use crate::query::{self, Matcher, SearchRequest, Sort};

/// The analyzer of every searchable text field: words, lowercased, ASCII-folded, English
/// stems; words over 40 characters dropped.
pub const TEXT_ANALYZER: &str = "storefleet_text";
/// The same without stemming (highlighting needs the surface form).
const RAW_ANALYZER: &str = "storefleet_raw";
pub const UNLISTED: &str = "_unlisted";
pub const OTHER: &str = "other";

#[derive(Debug, Error)]
pub enum IndexError {
    #[error("tantivy: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
    #[error("opening the index folder {path}: {source}")]
    Directory {
        path: PathBuf,
        #[source]
        source: tantivy::directory::error::OpenDirectoryError,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("commit payload of shard `{shard}` is not ours: {source}")]
    Payload {
        shard: String,
        #[source]
        source: serde_json::Error,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> IndexError {
    let what = what.into();
    move |source| IndexError::Io { what, source }
}

/// What a commit covers: stored in every shard's commit (tantivy's commit payload).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payload {
    /// Commit sequence of this generation (1, 2, …).
    pub seq: u64,
    /// Next offset to read of every input partition, by `topic/partition`: every record
    /// before it is in the index.
    pub positions: BTreeMap<String, i64>,
    pub committed_at_ms: i64,
    /// Newest source timestamp (CDC commit time, availability time) applied.
    pub newest_source_at_ms: Option<i64>,
}

impl Payload {
    pub fn position_key(topic: &str, partition: i32) -> String {
        format!("{topic}/{partition}")
    }
}

/// The fields of the schema.
#[derive(Debug, Clone, Copy)]
pub struct Fields {
    pub id: Field,
    pub listed: Field,
    pub sku: Field,
    pub title: Field,
    pub description: Field,
    pub brand: Field,
    pub brand_text: Field,
    pub brand_key: Field,
    pub category: Field,
    pub category_text: Field,
    pub category_key: Field,
    pub top_category_key: Field,
    pub price: Field,
    pub in_stock: Field,
    pub quantity: Field,
    pub updated_at: Field,
    pub image_url: Field,
    pub catalog_lsn: Field,
    pub availability_seq: Field,
}

/// Field boosts of the full-text fields: a word in the title counts most.
fn boosts(f: &Fields) -> [(Field, Score); 4] {
    [
        (f.title, 3.0),
        (f.brand_text, 2.0),
        (f.category_text, 1.5),
        (f.description, 1.0),
    ]
}

/// `in_stock` values (a u64 fast field): unknown until the first availability record.
const STOCK_NO: u64 = 0;
const STOCK_YES: u64 = 1;
const STOCK_UNKNOWN: u64 = 2;

pub fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let text = |stored: bool| {
        let o = TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(TEXT_ANALYZER)
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        );
        if stored {
            o.set_stored()
        } else {
            o
        }
    };
    let keyword_fast = STRING | FAST | STORED;
    let fields = Fields {
        id: b.add_text_field("id", STRING | STORED),
        listed: b.add_u64_field("listed", STORED),
        sku: b.add_text_field("sku", STORED),
        title: b.add_text_field("title", text(true)),
        description: b.add_text_field("description", text(true)),
        brand: b.add_text_field("brand", keyword_fast.clone()),
        brand_text: b.add_text_field("brand_text", text(false)),
        brand_key: b.add_text_field("brand_key", STRING),
        category: b.add_text_field("category", keyword_fast),
        category_text: b.add_text_field("category_text", text(false)),
        category_key: b.add_text_field("category_key", STRING),
        top_category_key: b.add_text_field("top_category_key", STRING),
        price: b.add_u64_field("price", INDEXED | FAST | STORED),
        in_stock: b.add_u64_field("in_stock", INDEXED | FAST | STORED),
        quantity: b.add_i64_field("quantity", STORED),
        updated_at: b.add_i64_field(
            "updated_at",
            NumericOptions::default().set_fast().set_stored(),
        ),
        image_url: b.add_text_field("image_url", STORED),
        catalog_lsn: b.add_i64_field("catalog_lsn", STORED),
        availability_seq: b.add_i64_field("availability_seq", STORED),
    };
    (b.build(), fields)
}

fn analyzer(stem: bool) -> TextAnalyzer {
    let base = TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(query::MAX_WORD_CHARS + 1))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter);
    if stem {
        base.filter(Stemmer::new(Language::English)).build()
    } else {
        base.build()
    }
}

/// Registers the analyzers the schema names on `index`.
pub fn register_analyzers(index: &Index) {
    index.tokenizers().register(TEXT_ANALYZER, analyzer(true));
    index.tokenizers().register(RAW_ANALYZER, analyzer(false));
}

/// Tokens of `text` by `analyzer`: (text, byte from, byte to).
fn tokens(analyzer: &mut TextAnalyzer, text: &str) -> Vec<(String, usize, usize)> {
    let mut out = Vec::new();
    let mut stream = analyzer.token_stream(text);
    while stream.advance() {
        let t = stream.token();
        out.push((t.text.clone(), t.offset_from, t.offset_to));
    }
    out
}

/// Which shard a product's document lives in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Shard names: the configured categories, then `other`, then `_unlisted`.
    names: Vec<String>,
    /// Lowercased top-level category → shard.
    by_category: HashMap<String, usize>,
}

impl Layout {
    pub fn new(categories: &[String]) -> Self {
        let mut names: Vec<String> = categories.to_vec();
        names.push(OTHER.into());
        names.push(UNLISTED.into());
        let by_category = categories
            .iter()
            .enumerate()
            .map(|(i, c)| (c.to_lowercase(), i))
            .collect();
        Self { names, by_category }
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn unlisted(&self) -> usize {
        self.names.len() - 1
    }

    fn other(&self) -> usize {
        self.names.len() - 2
    }

    pub fn shard_of(&self, product: &Product) -> usize {
        if !product.listed {
            return self.unlisted();
        }
        self.by_category
            .get(&product.top_category().to_lowercase())
            .copied()
            .unwrap_or_else(|| self.other())
    }

    /// The shards a search with this category filter must ask (all listed shards without one).
    pub fn searched(&self, category: Option<&str>) -> Vec<usize> {
        match category {
            Some(c) => {
                let top = crate::doc::top_category(c).to_lowercase();
                vec![self
                    .by_category
                    .get(&top)
                    .copied()
                    .unwrap_or_else(|| self.other())]
            }
            None => (0..self.unlisted()).collect(),
        }
    }

    fn folder(&self, shard: usize) -> String {
        self.names[shard]
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect()
    }
}

/// Faults a test or an operator can put on one shard (admin endpoint, when enabled): to show
/// that a slow or broken shard degrades only its own results.
#[derive(Debug, Default)]
pub struct Fault {
    pub delay_ms: AtomicU64,
    pub fail: AtomicBool,
}

/// One shard's readable side.
pub struct Shard {
    pub name: String,
    reader: IndexReader,
    pub fault: Fault,
}

/// A generation's readable side: what queries use. Shared by the query service; the
/// indexer reloads its readers after each commit.
pub struct Searchable {
    pub dir: PathBuf,
    pub layout: Layout,
    pub fields: Fields,
    pub shards: Vec<Shard>,
}

/// A generation's writable side: owned by the one indexer loop (single writer of the index).
pub struct Writers {
    writers: Vec<IndexWriter>,
    fields: Fields,
    pub layout: Layout,
    pub searchable: Arc<Searchable>,
}

/// What opening a generation found.
pub enum Opened {
    /// Every shard at the same commit (or none yet: a fresh generation).
    Consistent(Payload),
    /// Shards at different commit sequences: a crash between shard commits. `oldest` is the
    /// payload of the shard furthest behind (replay from its positions), `newest_seq` the
    /// highest sequence any shard reached (the next commit must exceed it).
    Torn {
        oldest: Payload,
        newest_seq: u64,
        seqs: Vec<(String, u64)>,
    },
}

pub struct Generation;

impl Generation {
    /// Opens (or creates) the generation in `dir`. `writer_memory` bytes per shard writer.
    pub fn open(
        dir: &Path,
        layout: &Layout,
        writer_memory: usize,
    ) -> Result<(Writers, Opened), IndexError> {
        let (schema, fields) = schema();
        let mut shards = Vec::new();
        let mut writers = Vec::new();
        let mut payloads = Vec::new();
        for (i, name) in layout.names().iter().enumerate() {
            let path = dir.join(layout.folder(i));
            std::fs::create_dir_all(&path).map_err(io(format!("creating {}", path.display())))?;
            let directory = MmapDirectory::open(&path).map_err(|source| IndexError::Directory {
                path: path.clone(),
                source,
            })?;
            let index = Index::open_or_create(directory, schema.clone())?;
            register_analyzers(&index);
            let payload = match index.load_metas()?.payload {
                Some(text) => serde_json::from_str::<Payload>(&text).map_err(|source| {
                    IndexError::Payload {
                        shard: name.clone(),
                        source,
                    }
                })?,
                None => Payload::default(),
            };
            payloads.push((name.clone(), payload));
            let writer: IndexWriter = index.writer_with_num_threads(1, writer_memory)?;
            let reader = index
                .reader_builder()
                .reload_policy(ReloadPolicy::Manual)
                .try_into()?;
            writers.push(writer);
            shards.push(Shard {
                name: name.clone(),
                reader,
                fault: Fault::default(),
            });
        }
        let first = payloads[0].1.seq;
        let opened = if payloads.iter().all(|(_, p)| p.seq == first) {
            Opened::Consistent(payloads.swap_remove(0).1)
        } else {
            let seqs: Vec<(String, u64)> =
                payloads.iter().map(|(n, p)| (n.clone(), p.seq)).collect();
            let newest_seq = seqs.iter().map(|(_, s)| *s).max().unwrap_or(0);
            let oldest = payloads
                .into_iter()
                .map(|(_, p)| p)
                .min_by_key(|p| p.seq)
                .unwrap_or_default();
            Opened::Torn {
                oldest,
                newest_seq,
                seqs,
            }
        };
        let searchable = Arc::new(Searchable {
            dir: dir.to_path_buf(),
            layout: layout.clone(),
            fields,
            shards,
        });
        Ok((
            Writers {
                writers,
                fields,
                layout: layout.clone(),
                searchable,
            },
            opened,
        ))
    }
}

impl Writers {
    /// Writes `product`'s document to its shard; `previous` is the shard its current
    /// document is in, if any (deleted there first).
    pub fn upsert(&self, product: &Product, previous: Option<usize>) -> Result<(), IndexError> {
        let shard = self.layout.shard_of(product);
        if let Some(previous) = previous {
            self.writers[previous].delete_term(Term::from_field_text(self.fields.id, &product.id));
        }
        self.writers[shard].add_document(document(&self.fields, product))?;
        Ok(())
    }

    pub fn delete(&self, id: &str, shard: usize) {
        self.writers[shard].delete_term(Term::from_field_text(self.fields.id, id));
    }

    /// Commits every shard with `payload`, then makes the commit searchable.
    pub fn commit(&mut self, payload: &Payload) -> Result<(), IndexError> {
        let text = serde_json::to_string(payload).map_err(|source| IndexError::Payload {
            shard: "*".into(),
            source,
        })?;
        for writer in &mut self.writers {
            let mut prepared = writer.prepare_commit()?;
            prepared.set_payload(&text);
            prepared.commit()?;
        }
        for shard in &self.searchable.shards {
            shard.reader.reload()?;
        }
        Ok(())
    }

    /// Every document the committed index holds (the catalog to resume with).
    pub fn load(&self) -> Result<Vec<Product>, IndexError> {
        self.searchable.all_products()
    }

    /// Every stored document with the index of the shard holding it.
    pub fn load_by_shard(&self) -> Result<Vec<(usize, Product)>, IndexError> {
        self.searchable.products_by_shard()
    }

    /// Waits for background merges (a clean stop).
    pub fn close(self) -> Result<(), IndexError> {
        for w in self.writers {
            w.wait_merging_threads()?;
        }
        Ok(())
    }
}

/// The tantivy document of a product.
pub fn document(f: &Fields, p: &Product) -> TantivyDocument {
    let mut d = TantivyDocument::new();
    d.add_text(f.id, &p.id);
    d.add_u64(f.listed, u64::from(p.listed));
    d.add_text(f.sku, &p.sku);
    d.add_text(f.title, &p.title);
    d.add_text(f.description, &p.description);
    d.add_text(f.brand, &p.brand);
    d.add_text(f.brand_text, &p.brand);
    d.add_text(f.brand_key, p.brand.to_lowercase());
    d.add_text(f.category, &p.category);
    d.add_text(f.category_text, &p.category);
    d.add_text(f.category_key, p.category.to_lowercase());
    d.add_text(f.top_category_key, p.top_category().to_lowercase());
    d.add_u64(f.price, p.price_minor);
    d.add_u64(
        f.in_stock,
        match p.in_stock {
            Some(true) => STOCK_YES,
            Some(false) => STOCK_NO,
            None => STOCK_UNKNOWN,
        },
    );
    d.add_i64(f.quantity, p.available_quantity.map_or(-1, i64::from));
    d.add_i64(f.updated_at, p.updated_at_ms);
    if let Some(url) = &p.image_url {
        d.add_text(f.image_url, url);
    }
    d.add_i64(f.catalog_lsn, p.catalog_lsn);
    d.add_i64(f.availability_seq, p.availability_seq);
    d
}

fn text(d: &TantivyDocument, f: Field) -> String {
    d.get_first(f)
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string()
}

fn int(d: &TantivyDocument, f: Field) -> i64 {
    d.get_first(f).and_then(|v| v.as_i64()).unwrap_or_default()
}

fn uint(d: &TantivyDocument, f: Field) -> u64 {
    d.get_first(f).and_then(|v| v.as_u64()).unwrap_or_default()
}

fn product(f: &Fields, d: &TantivyDocument) -> Product {
    let quantity = int(d, f.quantity);
    Product {
        id: text(d, f.id),
        listed: uint(d, f.listed) == 1,
        sku: text(d, f.sku),
        title: text(d, f.title),
        description: text(d, f.description),
        category: text(d, f.category),
        brand: text(d, f.brand),
        price_minor: uint(d, f.price),
        image_url: d
            .get_first(f.image_url)
            .and_then(|v| v.as_str())
            .map(String::from),
        updated_at_ms: int(d, f.updated_at),
        catalog_lsn: int(d, f.catalog_lsn),
        in_stock: match uint(d, f.in_stock) {
            STOCK_YES => Some(true),
            STOCK_NO => Some(false),
            _ => None,
        },
        available_quantity: (quantity >= 0).then(|| i32::try_from(quantity).unwrap_or(i32::MAX)),
        availability_seq: int(d, f.availability_seq),
    }
}

/// A request turned into a tantivy query, plus what highlighting needs.
pub struct Compiled {
    pub query: Box<dyn Query>,
    pub matcher: Matcher,
}

/// Builds the query of `request`: every term must match; filters constrain without scoring.
pub fn compile(fields: &Fields, request: &SearchRequest) -> Compiled {
    let mut stemmer = analyzer(true);
    let mut folder = analyzer(false);
    let mut must: Vec<(Occur, Box<dyn Query>)> = Vec::new();
    let mut matcher = Matcher { words: Vec::new() };
    for term in &request.terms {
        match term {
            query::Term::Word {
                text,
                typos,
                prefix,
            } => {
                let stem = tokens(&mut stemmer, text).into_iter().next().map(|t| t.0);
                let folded = tokens(&mut folder, text).into_iter().next().map(|t| t.0);
                let mut any: Vec<(Occur, Box<dyn Query>)> = Vec::new();
                for (field, boost) in boosts(fields) {
                    if let Some(stem) = &stem {
                        let t = Term::from_field_text(field, stem);
                        any.push(boosted(
                            TermQuery::new(t.clone(), IndexRecordOption::WithFreqs),
                            boost,
                        ));
                        if *typos > 0 {
                            any.push(boosted(FuzzyTermQuery::new(t, *typos, true), boost * 0.5));
                        }
                    }
                    if *prefix {
                        if let Some(raw) = &folded {
                            let t = Term::from_field_text(field, raw);
                            any.push(boosted(FuzzyTermQuery::new_prefix(t, 0, true), boost * 0.7));
                        }
                    }
                }
                if any.is_empty() {
                    continue;
                }
                matcher.words.push((
                    stem.unwrap_or_default(),
                    *typos,
                    prefix.then(|| folded.unwrap_or_default()),
                ));
                must.push((Occur::Must, Box::new(BooleanQuery::new(any))));
            }
            query::Term::Phrase(words) => {
                let stems: Vec<String> = words
                    .iter()
                    .filter_map(|w| tokens(&mut stemmer, w).into_iter().next().map(|t| t.0))
                    .collect();
                if stems.is_empty() {
                    continue;
                }
                for s in &stems {
                    matcher.words.push((s.clone(), 0, None));
                }
                let mut any: Vec<(Occur, Box<dyn Query>)> = Vec::new();
                for (field, boost) in [(fields.title, 3.0), (fields.description, 1.0)] {
                    let terms: Vec<Term> = stems
                        .iter()
                        .map(|s| Term::from_field_text(field, s))
                        .collect();
                    let q: Box<dyn Query> = if terms.len() == 1 {
                        Box::new(TermQuery::new(
                            terms[0].clone(),
                            IndexRecordOption::WithFreqs,
                        ))
                    } else {
                        Box::new(PhraseQuery::new(terms))
                    };
                    any.push((Occur::Should, Box::new(BoostQuery::new(q, boost))));
                }
                must.push((Occur::Must, Box::new(BooleanQuery::new(any))));
            }
        }
    }
    let f = &request.filters;
    let filter = |q: Box<dyn Query>| -> (Occur, Box<dyn Query>) {
        (Occur::Must, Box::new(ConstScoreQuery::new(q, 0.0)))
    };
    let keyword = |field: Field, value: &str| -> Box<dyn Query> {
        Box::new(TermQuery::new(
            Term::from_field_text(field, value),
            IndexRecordOption::Basic,
        ))
    };
    if let Some(category) = &f.category {
        let key = category.to_lowercase();
        let q = if key.contains('/') {
            keyword(fields.category_key, &key)
        } else {
            keyword(fields.top_category_key, &key)
        };
        must.push(filter(q));
    }
    if let Some(brand) = &f.brand {
        must.push(filter(keyword(fields.brand_key, brand)));
    }
    if f.min_price_minor.is_some() || f.max_price_minor.is_some() {
        let lo = f.min_price_minor.unwrap_or(0);
        let hi = f.max_price_minor.unwrap_or(u64::MAX);
        must.push(filter(Box::new(RangeQuery::new(
            Bound::Included(Term::from_field_u64(fields.price, lo)),
            Bound::Included(Term::from_field_u64(fields.price, hi)),
        ))));
    }
    if let Some(in_stock) = f.in_stock {
        let value = if in_stock { STOCK_YES } else { STOCK_NO };
        must.push(filter(Box::new(TermQuery::new(
            Term::from_field_u64(fields.in_stock, value),
            IndexRecordOption::Basic,
        ))));
    }
    Compiled {
        query: Box::new(BooleanQuery::new(must)),
        matcher,
    }
}

fn boosted(q: impl Query, boost: Score) -> (Occur, Box<dyn Query>) {
    (Occur::Should, Box::new(BoostQuery::new(Box::new(q), boost)))
}

/// Facet counts: value → documents matching.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Facets {
    pub category: BTreeMap<String, u64>,
    pub brand: BTreeMap<String, u64>,
    pub in_stock: BTreeMap<String, u64>,
}

impl Facets {
    pub fn merge(&mut self, other: Facets) {
        for (mine, theirs) in [
            (&mut self.category, other.category),
            (&mut self.brand, other.brand),
            (&mut self.in_stock, other.in_stock),
        ] {
            for (k, v) in theirs {
                *mine.entry(k).or_default() += v;
            }
        }
    }

    /// Keeps the `n` largest values of each facet (brands run into hundreds).
    pub fn top(mut self, n: usize) -> Self {
        for facet in [&mut self.category, &mut self.brand] {
            if facet.len() > n {
                let mut all: Vec<(String, u64)> = std::mem::take(facet).into_iter().collect();
                all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                all.truncate(n);
                *facet = all.into_iter().collect();
            }
        }
        self
    }
}

/// Counts category, brand and stock state over the matching documents from the fast fields.
struct FacetCollector;

struct FacetSegment {
    category: Option<StrColumn>,
    brand: Option<StrColumn>,
    in_stock: tantivy::columnar::Column<u64>,
    category_counts: Vec<u64>,
    brand_counts: Vec<u64>,
    stock_counts: [u64; 3],
}

type SegmentFacets = (Vec<(String, u64)>, Vec<(String, u64)>, [u64; 3]);

impl Collector for FacetCollector {
    type Fruit = Facets;
    type Child = FacetSegment;

    fn for_segment(
        &self,
        _: SegmentOrdinal,
        segment: &SegmentReader,
    ) -> tantivy::Result<FacetSegment> {
        let ff = segment.fast_fields();
        let category = ff.str("category")?;
        let brand = ff.str("brand")?;
        let size = |c: &Option<StrColumn>| c.as_ref().map_or(0, |c| c.num_terms());
        Ok(FacetSegment {
            category_counts: vec![0; size(&category)],
            brand_counts: vec![0; size(&brand)],
            category,
            brand,
            in_stock: ff.u64("in_stock")?,
            stock_counts: [0; 3],
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<SegmentFacets>) -> tantivy::Result<Facets> {
        let mut out = Facets::default();
        for (category, brand, stock) in fruits {
            for (k, v) in category {
                *out.category.entry(k).or_default() += v;
            }
            for (k, v) in brand {
                *out.brand.entry(k).or_default() += v;
            }
            for (i, name) in ["false", "true", "unknown"].iter().enumerate() {
                if stock[i] > 0 {
                    *out.in_stock.entry((*name).to_string()).or_default() += stock[i];
                }
            }
        }
        Ok(out)
    }
}

impl SegmentCollector for FacetSegment {
    type Fruit = SegmentFacets;

    fn collect(&mut self, doc: DocId, _: Score) {
        if let Some(c) = &self.category {
            for ord in c.term_ords(doc) {
                self.category_counts[ord as usize] += 1;
            }
        }
        if let Some(c) = &self.brand {
            for ord in c.term_ords(doc) {
                self.brand_counts[ord as usize] += 1;
            }
        }
        if let Some(v) = self.in_stock.first(doc) {
            self.stock_counts[(v.min(2)) as usize] += 1;
        }
    }

    fn harvest(self) -> SegmentFacets {
        let names = |column: &Option<StrColumn>, counts: Vec<u64>| -> Vec<(String, u64)> {
            let Some(column) = column else {
                return Vec::new();
            };
            counts
                .into_iter()
                .enumerate()
                .filter(|(_, n)| *n > 0)
                .filter_map(|(ord, n)| {
                    let mut s = String::new();
                    column
                        .ord_to_str(ord as u64, &mut s)
                        .ok()?
                        .then_some((s, n))
                })
                .collect()
        };
        (
            names(&self.category, self.category_counts),
            names(&self.brand, self.brand_counts),
            self.stock_counts,
        )
    }
}

/// A hit's sort key, comparable across shards (larger first).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Rank(pub f64);

/// One shard's answer to a query.
pub struct ShardAnswer {
    pub shard: usize,
    pub total: usize,
    pub facets: Facets,
    pub top: Vec<(Rank, Score, DocAddress)>,
    pub searcher: Searcher,
}

impl Searchable {
    /// Runs `compiled` on shard `shard`, collecting `depth` hits in `sort` order.
    pub fn search_shard(
        &self,
        shard: usize,
        compiled: &Compiled,
        sort: Sort,
        depth: usize,
    ) -> Result<ShardAnswer, IndexError> {
        let s = &self.shards[shard];
        let delay = s.fault.delay_ms.load(Ordering::Relaxed);
        if delay > 0 {
            std::thread::sleep(std::time::Duration::from_millis(delay));
        }
        if s.fault.fail.load(Ordering::Relaxed) {
            return Err(IndexError::Io {
                what: format!("shard `{}`", s.name),
                source: std::io::Error::other("fault injected"),
            });
        }
        let searcher = s.reader.searcher();
        let query = compiled.query.as_ref();
        let limit = depth.max(1);
        let collect = |top: Vec<(Rank, Score, DocAddress)>, total, facets| ShardAnswer {
            shard,
            total,
            facets,
            top,
            searcher: searcher.clone(),
        };
        Ok(match sort {
            Sort::Relevance => {
                let (hits, total, facets) = searcher.search(
                    query,
                    &(
                        TopDocs::with_limit(limit).order_by_score(),
                        Count,
                        FacetCollector,
                    ),
                )?;
                let top = hits
                    .into_iter()
                    .map(|(score, a)| (Rank(f64::from(score)), score, a))
                    .collect();
                collect(top, total, facets)
            }
            Sort::PriceAsc | Sort::PriceDesc => {
                let (order, sign) = if sort == Sort::PriceAsc {
                    (Order::Asc, -1.0)
                } else {
                    (Order::Desc, 1.0)
                };
                let (hits, total, facets) = searcher.search(
                    query,
                    &(
                        TopDocs::with_limit(limit).order_by_fast_field::<u64>("price", order),
                        Count,
                        FacetCollector,
                    ),
                )?;
                let top = hits
                    .into_iter()
                    .map(|(v, a)| (Rank(sign * v.unwrap_or(0) as f64), 0.0, a))
                    .collect();
                collect(top, total, facets)
            }
            Sort::Newest => {
                let (hits, total, facets) = searcher.search(
                    query,
                    &(
                        TopDocs::with_limit(limit)
                            .order_by_fast_field::<i64>("updated_at", Order::Desc),
                        Count,
                        FacetCollector,
                    ),
                )?;
                let top = hits
                    .into_iter()
                    .map(|(v, a)| (Rank(v.unwrap_or(0) as f64), 0.0, a))
                    .collect();
                collect(top, total, facets)
            }
        })
    }

    /// The result-page view of a hit, with highlights.
    pub fn hit(
        &self,
        answer: &ShardAnswer,
        address: DocAddress,
        score: Score,
        matcher: &Matcher,
    ) -> Result<Hit, IndexError> {
        let doc: TantivyDocument = answer.searcher.doc(address)?;
        let p = product(&self.fields, &doc);
        Ok(Hit {
            highlights: Highlights {
                title: highlight_text(&p.title, matcher, 200),
                description: highlight_text(&p.description, matcher, 160),
            },
            price: format_minor(p.price_minor),
            id: p.id,
            sku: p.sku,
            title: p.title,
            brand: p.brand,
            category: p.category,
            price_minor: p.price_minor,
            in_stock: p.in_stock,
            available_quantity: p.available_quantity,
            image_url: p.image_url,
            updated_at: p.updated_at_ms,
            score,
            shard: self.shards[answer.shard].name.clone(),
        })
    }

    /// Documents in the committed index of each shard (alive ones).
    pub fn doc_counts(&self) -> Vec<(String, u64)> {
        self.shards
            .iter()
            .map(|s| (s.name.clone(), s.reader.searcher().num_docs()))
            .collect()
    }

    /// All committed documents (tests and the consistency check).
    pub fn all_products(&self) -> Result<Vec<Product>, IndexError> {
        Ok(self
            .products_by_shard()?
            .into_iter()
            .map(|(_, p)| p)
            .collect())
    }

    /// Every stored document with the index of the shard holding it.
    pub fn products_by_shard(&self) -> Result<Vec<(usize, Product)>, IndexError> {
        let mut out = Vec::new();
        for (i, shard) in self.shards.iter().enumerate() {
            let searcher = shard.reader.searcher();
            for segment in searcher.segment_readers() {
                let store = segment
                    .get_store_reader(64)
                    .map_err(io("reading stored documents"))?;
                for doc in store.iter::<TantivyDocument>(segment.alive_bitset()) {
                    out.push((i, product(&self.fields, &doc?)));
                }
            }
        }
        Ok(out)
    }

    pub fn shard_index(&self, name: &str) -> Option<usize> {
        self.shards
            .iter()
            .position(|s| s.name.eq_ignore_ascii_case(name))
    }
}

fn highlight_text(text: &str, matcher: &Matcher, max: usize) -> String {
    let mut raw = analyzer(false);
    let mut stem = analyzer(true);
    let marks: Vec<(usize, usize)> = tokens(&mut raw, text)
        .into_iter()
        .filter(|(token, _, _)| {
            let stemmed = tokens(&mut stem, token)
                .into_iter()
                .next()
                .map(|t| t.0)
                .unwrap_or_default();
            matcher.matches(&stemmed, token)
        })
        .map(|(_, from, to)| (from, to))
        .collect();
    query::highlight(text, &marks, max)
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Highlights {
    pub title: String,
    pub description: String,
}

/// What a result page shows of one product, from the index.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Hit {
    pub id: String,
    pub sku: String,
    pub title: String,
    pub brand: String,
    pub category: String,
    pub price: String,
    pub price_minor: u64,
    pub in_stock: Option<bool>,
    pub available_quantity: Option<i32>,
    pub image_url: Option<String>,
    pub updated_at: i64,
    pub score: Score,
    pub shard: String,
    pub highlights: Highlights,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::indexer::IndexState;

    fn product(id: &str, category: &str, lsn: i64) -> Product {
        Product {
            id: id.into(),
            listed: true,
            sku: format!("SKU-{id}"),
            title: format!("Product {id}"),
            description: String::new(),
            category: category.into(),
            brand: "Brand".into(),
            price_minor: 1_000,
            image_url: None,
            updated_at_ms: 0,
            catalog_lsn: lsn,
            in_stock: Some(true),
            available_quantity: Some(3),
            availability_seq: 1,
        }
    }

    fn payload(seq: u64, offset: i64) -> Payload {
        let mut p = Payload {
            seq,
            ..Payload::default()
        };
        p.positions.insert("t/0".into(), offset);
        p
    }

    #[test]
    fn a_torn_commit_reopens_in_place_at_the_oldest_positions_with_one_document_each() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(&["Furniture".to_string()]);
        let memory = 15 << 20;
        let (mut w, opened) = Generation::open(&dir.path().join("gen-1"), &layout, memory).unwrap();
        assert!(matches!(opened, Opened::Consistent(_)));
        let chair = product("p1", "Furniture/Chairs", 10);
        w.upsert(&chair, None).unwrap();
        w.upsert(&product("p2", "Furniture/Tables", 11), None)
            .unwrap();
        w.commit(&payload(1, 5)).unwrap();
        // The chair moves to another category; the crash comes after only the shard it moves
        // to committed (the delete in its old shard is lost with the process).
        let moved = product("p1", "Technology/Phones", 12);
        w.upsert(&moved, Some(layout.shard_of(&chair))).unwrap();
        let text = serde_json::to_string(&payload(2, 9)).unwrap();
        let mut prepared = w.writers[layout.shard_of(&moved)].prepare_commit().unwrap();
        prepared.set_payload(&text);
        prepared.commit().unwrap();
        drop(w);

        let (_, opened) = Generation::open(&dir.path().join("gen-1"), &layout, memory).unwrap();
        let Opened::Torn {
            oldest, newest_seq, ..
        } = opened
        else {
            panic!("shards at sequences 1 and 2 must read as torn");
        };
        assert_eq!((oldest.seq, newest_seq), (1, 2));

        let mut state = IndexState::open(dir.path(), "gen-1", &layout, memory).unwrap();
        assert_eq!(state.seq(), 2, "the next commit goes past every shard's");
        assert_eq!(
            state.positions()["t/0"],
            5,
            "replay from the oldest shard's positions"
        );
        state.commit().unwrap();
        let docs = state.writers().load_by_shard().unwrap();
        let chairs: Vec<&(usize, Product)> = docs.iter().filter(|(_, p)| p.id == "p1").collect();
        assert_eq!(chairs.len(), 1, "one document per product: {docs:?}");
        assert_eq!(chairs[0].0, layout.shard_of(&moved));
        assert_eq!(chairs[0].1.catalog_lsn, 12, "the newer version is kept");
        assert_eq!(docs.len(), 2);
        drop(state);
        let (_, opened) = Generation::open(&dir.path().join("gen-1"), &layout, memory).unwrap();
        assert!(matches!(opened, Opened::Consistent(p) if p.seq == 3));
    }
}
