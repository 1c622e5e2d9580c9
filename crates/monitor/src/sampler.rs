//! The sampler: every interval, one Kafka reading and one round of admin probes, assembled
//! into the views and published on the [`Board`].
//!
//! Single writers: the sampler task is the only writer of the [`History`] (it owns it) and
//! of the board; HTTP handlers only read the board, by cloning an `Arc` out of a lock held
//! for that instant.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};

use tokio_util::sync::CancellationToken;
use topology::Topology;

use crate::assemble::{assemble, SampleInputs};
use crate::config::MonitorConfig;
use crate::error::{MonitorError, Problems};
use crate::history::History;
use crate::kafka::{GroupRequest, KafkaProbe, KafkaReading};
use crate::model::{GroupDetail, HistoryPoint, Overview};
use crate::plan::{Plan, Target};
use crate::{metrics, scrape};

/// One sample's views.
#[derive(Debug)]
pub struct Frame {
    pub overview: Overview,
    /// By group id.
    pub groups: BTreeMap<String, GroupDetail>,
}

/// What the HTTP side reads: the last frames (so a page can ask for the very sample it
/// shows), the chart series and the metrics text of the latest sample.
#[derive(Debug, Default)]
pub struct Board {
    published: RwLock<Published>,
}

#[derive(Debug, Default, Clone)]
struct Published {
    frames: VecDeque<Arc<Frame>>,
    history: Arc<BTreeMap<String, Vec<HistoryPoint>>>,
    metrics: Arc<String>,
}

impl Board {
    /// Frames kept for `?seq=` lookups.
    const FRAMES: usize = 30;

    fn publish(&self, frame: Frame, history: BTreeMap<String, Vec<HistoryPoint>>, metrics: String) {
        let mut published = self.published.write().unwrap_or_else(|e| e.into_inner());
        published.frames.push_back(Arc::new(frame));
        while published.frames.len() > Self::FRAMES {
            published.frames.pop_front();
        }
        published.history = Arc::new(history);
        published.metrics = Arc::new(metrics);
    }

    fn read(&self) -> Published {
        self.published
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The latest frame, or the one numbered `seq` if still kept.
    pub fn frame(&self, seq: Option<u64>) -> Option<Arc<Frame>> {
        let published = self.read();
        match seq {
            None => published.frames.back().cloned(),
            Some(seq) => published
                .frames
                .iter()
                .find(|f| f.overview.seq == seq)
                .cloned(),
        }
    }

    pub fn history(&self) -> Arc<BTreeMap<String, Vec<HistoryPoint>>> {
        self.read().history
    }

    pub fn metrics(&self) -> Arc<String> {
        self.read().metrics
    }
}

pub struct Sampler {
    config: MonitorConfig,
    plan: Plan,
    targets: Vec<Target>,
    topics: Vec<String>,
    requests: Vec<GroupRequest>,
    /// Locked only by the blocking read it is lent to; never contended.
    probe: Arc<Mutex<KafkaProbe>>,
    http: reqwest::Client,
    history: History,
    problems: Problems,
    seq: u64,
}

impl Sampler {
    pub fn new(config: &MonitorConfig, topology: &Topology) -> Result<Self, MonitorError> {
        let plan = Plan::from_topology(topology, config.admin_host);
        let requests = plan
            .groups
            .iter()
            .map(|g| GroupRequest {
                group: g.group.clone(),
                topics: g.topics.clone(),
            })
            .collect();
        let http = http_client(config)?;
        Ok(Self {
            targets: plan.targets(),
            topics: plan.topics(),
            requests,
            probe: Arc::new(Mutex::new(KafkaProbe::new(
                &config.bootstrap_servers,
                config.kafka_timeout,
                config.interval,
            )?)),
            http,
            history: History::new(config.window, config.history.as_millis() as i64),
            problems: Problems::default(),
            seq: 0,
            plan,
            config: config.clone(),
        })
    }

    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Takes one sample: Kafka and the admin ports at once, then the views.
    pub async fn sample(&mut self) -> (Frame, String) {
        let at_ms = runtime::now_ms();
        let probe = self.probe.clone();
        let topics = self.topics.clone();
        let requests = self.requests.clone();
        let kafka = tokio::task::spawn_blocking(move || {
            probe
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .read(&topics, &requests)
        });
        let instances = scrape::probe_all(&self.http, &self.targets);
        let (kafka, probes) = tokio::join!(kafka, instances);
        let kafka = kafka.unwrap_or_else(|join| KafkaReading {
            errors: vec![MonitorError::Join(join)],
            ..KafkaReading::default()
        });
        for error in &kafka.errors {
            self.problems.report(error);
        }
        self.seq += 1;
        let inputs = SampleInputs {
            seq: self.seq,
            at_ms,
            interval_ms: self.config.interval.as_millis() as u64,
            bootstrap: &self.config.bootstrap_servers,
            plan: &self.plan,
            targets: &self.targets,
            kafka: &kafka,
            probes: &probes,
        };
        let mut assembled = assemble(&inputs, &mut self.history);
        assembled.overview.problems = self.problems.finish();
        let text = metrics::render(&assembled.overview, &assembled.groups);
        let frame = Frame {
            overview: assembled.overview,
            groups: assembled.groups,
        };
        (frame, text)
    }

    /// Samples every interval until `shutdown`, publishing each sample on `board`.
    pub async fn run(mut self, board: Arc<Board>, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(self.config.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = ticker.tick() => self.sample_and_publish(&board, &shutdown).await,
            }
        }
        self.close().await;
    }

    /// Closes the Kafka clients, in parallel and off the async threads (each close takes
    /// a broker round trip or two).
    pub async fn close(self) {
        if let Ok(probe) = Arc::try_unwrap(self.probe) {
            let probe = probe.into_inner().unwrap_or_else(|e| e.into_inner());
            let _ = tokio::task::spawn_blocking(move || probe.close()).await;
        }
    }

    async fn sample_and_publish(&mut self, board: &Board, shutdown: &CancellationToken) {
        let sampled = tokio::select! {
            _ = shutdown.cancelled() => None,
            sampled = self.sample() => Some(sampled),
        };
        if let Some((frame, text)) = sampled {
            board.publish(frame, self.history.series(), text);
        }
    }
}

fn http_client(config: &MonitorConfig) -> Result<reqwest::Client, MonitorError> {
    reqwest::Client::builder()
        .timeout(config.probe_timeout)
        .connect_timeout(config.probe_timeout)
        .no_proxy()
        .build()
        .map_err(|source| MonitorError::Http {
            url: "(client)".to_string(),
            source,
        })
}
