//! `image-quality`: flags low-resolution, blurry, undecodable and (heuristically) watermarked
//! product images before shoppers see them, without ever blocking a seller's listing.
//!
//! - **Inputs.** Sellers' uploads are rows of `catalog.public.product_images`, carried by the
//!   catalog CDC connector (port `images`); a seller or operator asks for a re-check on
//!   `images.check-requested.v1` (port `requests`). The retry instance reads the processor's
//!   own `images.check-retries.v1` (port `retries`).
//! - **One check** ([`ImageQuality::check`]): download ([`fetch`]: per-host rate limit,
//!   timeouts, size cap), then decode and score on a bounded CPU pool ([`pool`]; `imageq` does
//!   the math), then the verdict ([`verdict`]): into the verdicts table ([`store`]), then on
//!   `images.check-results.v1`.
//! - **Retries.** A download that fails in a way a later attempt can fix goes to the retry
//!   topic with its next attempt and a `not_before` (exponential backoff, full jitter); the
//!   runtime holds such a record until then, in one of `concurrency` slots, so the input
//!   partition moves on. After `max_retries` the verdict is NEEDS_MANUAL_REVIEW.
//! - **Concurrency.** The pipelined driver runs up to `concurrency` records at once, one
//!   image's records in order. Decoding never runs on the async runtime's threads.
//! - **Idempotence.** The verdict row answers the newest request (see [`store`]); output
//!   event ids are derived from the input's coordinates, so a redelivered record writes the
//!   same row and a recognisable duplicate.

pub mod fetch;
pub mod pool;
pub mod store;
pub mod verdict;

use std::sync::{Arc, OnceLock};

use events::images::{ImageCheckRequested, ImageCheckResult, ImageCheckRetry, ProductImageChange};
use prometheus::{Histogram, HistogramOpts, IntCounterVec};
use rand::Rng;
use runtime::{headers, ids, Clock, ConcurrentProcessor, HandlerError, Input, Outputs, Topic};
use topology::{ImageQualityParams, ProcessorSpec};
use tracing::{debug, info};

use crate::fetch::{FetchPolicy, Fetcher};
use crate::verdict::{AfterFailure, CatalogChange, Check, Stamp};

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("image-quality parameters: {0}")]
    Params(String),
    #[error(transparent)]
    Runtime(#[from] runtime::RuntimeError),
    #[error("image-quality: the CPU pool: {0}")]
    Pool(String),
}

/// The topics this processor reads and writes, by port.
#[derive(Debug, Clone)]
pub struct Topics {
    pub images: Option<Topic<ProductImageChange>>,
    pub requests: Option<Topic<ImageCheckRequested>>,
    pub retries_in: Option<Topic<ImageCheckRetry>>,
    pub results: Topic<ImageCheckResult>,
    pub retries: Topic<ImageCheckRetry>,
}

impl Topics {
    pub fn from_spec(spec: &ProcessorSpec) -> Result<Self, runtime::RuntimeError> {
        let input = |port: &str| spec.inputs.contains_key(port);
        Ok(Self {
            images: input("images")
                .then(|| Topic::input(spec, "images"))
                .transpose()?,
            requests: input("requests")
                .then(|| Topic::input(spec, "requests"))
                .transpose()?,
            retries_in: input("retries")
                .then(|| Topic::input(spec, "retries"))
                .transpose()?,
            results: Topic::output(spec, "results")?,
            retries: Topic::output(spec, "retries")?,
        })
    }
}

struct CheckMetrics {
    verdicts: IntCounterVec,
    retries_scheduled: IntCounterVec,
    reused: prometheus::IntCounter,
    stale: prometheus::IntCounter,
    download_seconds: Histogram,
    score_seconds: Histogram,
}

fn metrics() -> &'static CheckMetrics {
    static METRICS: OnceLock<CheckMetrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let register = runtime::Registrar::process();
        CheckMetrics {
            verdicts: register.counter_vec(
                "storefleet_image_verdicts_total",
                "Verdicts written, by status",
                &["status"],
            ),
            retries_scheduled: register.counter_vec(
                "storefleet_image_retries_scheduled_total",
                "Checks sent to the retry topic, by the failed download's error kind",
                &["error_kind"],
            ),
            reused: register.counter(
                "storefleet_image_verdicts_reused_total",
                "Catalog rows answered by the verdict on file for the same URL and checker",
            ),
            stale: register.counter(
                "storefleet_image_verdicts_stale_total",
                "Verdicts not written because a newer request's verdict was on file",
            ),
            download_seconds: register.metric(Histogram::with_opts(HistogramOpts::new(
                "storefleet_image_download_seconds",
                "Image downloads that gave bytes, whole duration",
            ))),
            score_seconds: register.metric(Histogram::with_opts(HistogramOpts::new(
                "storefleet_image_score_seconds",
                "Decoding and scoring one image on the CPU pool, including the wait for a thread",
            ))),
        }
    })
}

/// One instance of the check.
pub struct ImageQuality {
    params: ImageQualityParams,
    topics: Topics,
    fetcher: Fetcher,
    pool: pool::CpuPool,
    store: Arc<store::Store>,
    policy: imageq::Policy,
    clock: Clock,
}

impl ImageQuality {
    pub fn new(
        params: ImageQualityParams,
        topics: Topics,
        store: Arc<store::Store>,
        clock: Clock,
    ) -> Result<Self, SetupError> {
        params.validate().map_err(SetupError::Params)?;
        let policy = checker_policy(&params);
        policy.validate().map_err(SetupError::Params)?;
        let fetcher = Fetcher::new(
            FetchPolicy::from_params(&params),
            params.host_rate_per_sec,
            params.host_burst,
        );
        let pool = pool::CpuPool::new(params.cpu_threads).map_err(SetupError::Pool)?;
        Ok(Self {
            params,
            topics,
            fetcher,
            pool,
            store,
            policy,
            clock,
        })
    }

    /// What `input` asks to check, if anything (a deleted image is forgotten here).
    async fn check_of(&self, input: &Input) -> Result<Option<Check>, HandlerError> {
        if input.value.is_none() {
            return Ok(None); // a tombstone after a catalog delete: the delete said it all
        }
        let now = self.clock.now_ms();
        if self
            .topics
            .images
            .as_ref()
            .is_some_and(|t| t.carries(input))
        {
            let change: ProductImageChange = input.decode()?;
            let event_id = ids::derived(&[&input.coordinates(), "request"]);
            return match verdict::from_catalog(change, event_id, now)
                .map_err(HandlerError::invalid)?
            {
                CatalogChange::Forget { image_id } => {
                    self.store
                        .forget(&image_id)
                        .await
                        .map_err(|e| HandlerError::transient("forgetting a deleted image", e))?;
                    Ok(None)
                }
                CatalogChange::Check(check) => Ok(Some(check)),
            };
        }
        if self
            .topics
            .retries_in
            .as_ref()
            .is_some_and(|t| t.carries(input))
        {
            let retry: ImageCheckRetry = input.decode()?;
            verdict::validate_request(&retry.request, input.key_str())
                .map_err(HandlerError::invalid)?;
            // A redriven dead letter starts a fresh attempt budget.
            let attempt = if input.header(headers::REDRIVEN_FROM).is_some() {
                1
            } else {
                retry.attempt.max(1)
            };
            return Ok(Some(Check {
                request: retry.request,
                attempt,
                first_attempted_at: retry.first_attempted_at,
                reuse_verdict: false,
            }));
        }
        let request: ImageCheckRequested = input.decode()?;
        verdict::validate_request(&request, input.key_str()).map_err(HandlerError::invalid)?;
        Ok(Some(Check {
            request,
            attempt: 1,
            first_attempted_at: now,
            reuse_verdict: false,
        }))
    }

    /// Makes one check: its verdict, or the retry to send.
    pub async fn check(&self, check: &Check) -> Outcome {
        match self.fetcher.fetch(&check.request.url).await {
            Ok(downloaded) => {
                metrics()
                    .download_seconds
                    .observe(downloaded.elapsed.as_secs_f64());
                let started = std::time::Instant::now();
                let assessment = self
                    .pool
                    .assess(
                        downloaded.bytes,
                        downloaded.content_type,
                        self.policy.clone(),
                    )
                    .await;
                metrics()
                    .score_seconds
                    .observe(started.elapsed().as_secs_f64());
                Outcome::Scored(assessment)
            }
            Err(error) => {
                match verdict::after_failure(&error, check.attempt, self.params.max_retries) {
                    AfterFailure::Retry { next } => Outcome::Retry { next, error },
                    AfterFailure::Answer => Outcome::Unfetched(error),
                }
            }
        }
    }

    fn backoff_ms(&self, attempt: i32) -> i64 {
        let cap =
            verdict::backoff_cap_ms(attempt, self.params.retry_base_ms, self.params.retry_max_ms);
        // Full jitter, but never less than a tenth of the cap: a retry is never immediate.
        let low = cap / 10;
        i64::try_from(rand::rng().random_range(low..=cap)).unwrap_or(i64::MAX)
    }
}

/// What one attempt came to.
pub enum Outcome {
    Scored(imageq::Assessment),
    Unfetched(fetch::FetchError),
    Retry { next: i32, error: fetch::FetchError },
}

/// The checker's thresholds (imageq's calibrated defaults).
pub fn checker_policy(params: &ImageQualityParams) -> imageq::Policy {
    let mut policy = imageq::Policy::default();
    policy.limits.max_bytes = usize::try_from(params.max_bytes).unwrap_or(usize::MAX);
    policy.watermark = params.watermark_check;
    policy
}

impl ConcurrentProcessor for ImageQuality {
    async fn handle(&self, input: &Input, out: &mut Outputs<'_>) -> Result<(), HandlerError> {
        let Some(check) = self.check_of(input).await? else {
            return Ok(());
        };
        let store_error = |e| HandlerError::transient("reading the verdict on file", e);
        if check.reuse_verdict {
            if let Some(on_file) = self
                .store
                .get(&check.request.image_id)
                .await
                .map_err(store_error)?
            {
                if on_file.url == check.request.url
                    && on_file.checker_version == self.policy.version
                {
                    metrics().reused.inc();
                    debug!(image = %check.request.image_id, "verdict on file for this URL");
                    return Ok(());
                }
            }
        }
        let stamp = || Stamp {
            event_id: ids::derived(&[&input.coordinates(), "result"]),
            occurred_at: self.clock.now_ms(),
            checker_version: self.policy.version,
        };
        let result = match self.check(&check).await {
            Outcome::Scored(a) => verdict::scored(&check, stamp(), &a),
            Outcome::Unfetched(error) => verdict::unfetched(&check, stamp(), &error),
            Outcome::Retry { next, error } => {
                let not_before = self.clock.now_ms() + self.backoff_ms(check.attempt);
                let retry = ImageCheckRetry {
                    event_id: ids::derived(&[&input.coordinates(), "retry"]),
                    occurred_at: self.clock.now_ms(),
                    correlation_id: check.request.image_id.clone(),
                    causation_id: Some(check.request.event_id.clone()),
                    request: check.request.clone(),
                    attempt: next,
                    not_before,
                    first_attempted_at: check.first_attempted_at,
                    last_error_kind: error.kind(),
                    last_error: error.detail().to_string(),
                };
                metrics()
                    .retries_scheduled
                    .with_label_values(&[error.kind().as_str()])
                    .inc();
                info!(image = %check.request.image_id, attempt = check.attempt, next, error = %error.detail(), "download failed; retry scheduled");
                let encoded = out.encode(&self.topics.retries, &retry)?;
                return out.send_raw(
                    self.topics.retries.name(),
                    Some(check.request.image_id.clone().into_bytes()),
                    encoded,
                    vec![(headers::NOT_BEFORE.to_string(), not_before.to_string())],
                );
            }
        };
        let written = self
            .store
            .record(&result, check.request.occurred_at)
            .await
            .map_err(|e| HandlerError::transient("writing the verdict", e))?;
        if !written {
            metrics().stale.inc();
            debug!(image = %result.image_id, "a newer request's verdict is on file; this one is not published");
            return Ok(());
        }
        metrics()
            .verdicts
            .with_label_values(&[result.status.as_str()])
            .inc();
        out.send(&self.topics.results, &result.image_id.clone(), &result)
    }
}

/// Builds one instance of processor `spec`.
pub async fn processor(
    config: &runtime::RuntimeConfig,
    spec: &ProcessorSpec,
    params: &ImageQualityParams,
    tasks: &tasks::Tasks,
) -> Result<ImageQuality, SetupError> {
    let database_url =
        runtime::postgres_database_url(&config.stack.postgres_url, &params.database)?;
    let store = Arc::new(store::Store::open(&database_url, 4, tasks));
    ImageQuality::new(
        params.clone(),
        Topics::from_spec(spec)?,
        store,
        Clock::system(),
    )
}
