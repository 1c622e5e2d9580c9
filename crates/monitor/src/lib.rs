//! Consumer-lag monitor and fleet dashboard (`fleet monitor`, started by `fleet up` as a
//! process of its own beside the processors, on 127.0.0.1:9300; `fleet status`).
//!
//! Every interval (5 s by default: on the stack's SQLite broker a sample under load costs up
//! to seconds of broker time) the monitor samples, for each processor's consumer group
//! of the topology and each input topic partition: the low and high watermarks, the group's
//! committed offset, and the timestamp of the oldest unconsumed record. From them:
//!
//! - **offset lag** = high watermark (as a `read_committed` consumer sees it) − committed
//!   offset (a group that never committed a partition counts from the low watermark:
//!   everything retained is unconsumed; so does a committed offset that retention already
//!   passed);
//! - **time lag** = sample time − timestamp of the record *at* the committed offset (the
//!   oldest unconsumed one; its own timestamp, CreateTime or LogAppendTime as the topic
//!   says, never interpolated from rates); 0 without lag. A record is read once per
//!   (partition, committed offset): an unchanged offset reuses the timestamp, and the rest of
//!   each fetched batch is kept as read-ahead. A read that does not finish within four fifths
//!   of the interval leaves the time lag unknown, never understated;
//! - **no phantom lag**: offsets past the committed one that hold nothing a consumer reads
//!   (a transaction marker at the end of an idle partition, aborted records) are not lag;
//!   they are reported apart as `marker_offsets`;
//! - **consume rate** (committed offset advance per second), **produce rate** (high
//!   watermark advance per second), the consume **trend** (newer half of the window against
//!   the older half) and the lag change per second across the window;
//! - a **status** per partition by the rules of [`rules`] (Burrow-style, over the last
//!   `window` samples: OK, WARN, STALLED, STOPPED; UNKNOWN when nothing could be read), and
//!   per group its worst partition's.
//!
//! It also asks every processor and connector instance's admin port for `/health` (up or
//! down, assigned partitions) and `/metrics` (throughput = rate of
//! `storefleet_records_in_total`, for connectors `storefleet_cdc_changes_total`; stuck
//! sagas = `storefleet_checkout_sagas_stuck_total` summed over the checkout instances), and
//! counts each dead-letter topic (high − low watermark of every `dlq.*` topic carrying
//! dead letters).
//!
//! STOPPED relies on group membership: the broker's DescribeGroups member list (nisshi
//! answers it). When membership cannot be read, nobody consumes when no instance of the
//! processor answers `/health`.
//!
//! Guarantees: the monitor never joins a group, never commits and never creates a topic
//! (one metadata request lists what exists; watermarks are asked only for existing
//! partitions). A sample never fails as a whole: what could not be read is UNKNOWN or
//! absent and listed under `problems`. The sampler task is the single writer of all state;
//! HTTP handlers read immutable published frames.
//!
//! Code: pure [`rules`] (status per partition over a window), `assemble` (views),
//! `promtext` (Prometheus text merge); I/O in `kafka` (watermarks, committed offsets, group
//! members, oldest-record timestamps) and `scrape` (instances' `/health` and `/metrics`);
//! `sampler` (the one writer of history), `http` (dashboard, JSON API, metrics), `status`
//! (`fleet status`).
//!
//! Served routes, all from the last published sample: see the `http` module (`/` the
//! dashboard, `/api/overview`, `/api/groups/{group}`, `/api/history` (10 min by default),
//! `/metrics` (the monitor's gauges), `/metrics/fleet` (every instance's own metrics, merged
//! and labelled), `/health`); `fleet status` prints the same overview. Operator
//! documentation, the Grafana dashboard and the alert rules: `docs/monitoring/`.

mod assemble;
mod config;
mod error;
mod history;
mod http;
mod kafka;
mod metrics;
mod model;
mod plan;
pub mod promtext;
pub mod rules;
mod sampler;
mod scrape;
mod status;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use topology::Topology;

pub use config::MonitorConfig;
pub use error::MonitorError;
pub use model::{
    BrokerView, ConnectorView, DlqView, GroupDetail, GroupHistory, HistoryPoint, InstanceState,
    InstanceView, Overview, PartitionView, ProcessorView, Status, Trend,
};
pub use status::render_status;

use sampler::{Board, Sampler};

/// Runs the monitor: samples every `config.interval` and serves the dashboard, the JSON API
/// and the metrics on `config.listen` until `shutdown`. The bound address (useful with port
/// 0) is sent on `ready` once the port is bound, before the first sample.
pub async fn serve(
    config: MonitorConfig,
    topology: Topology,
    shutdown: CancellationToken,
    ready: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
) -> Result<(), MonitorError> {
    let sampler = Sampler::new(&config, &topology)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| MonitorError::Bind {
            addr: config.listen,
            source,
        })?;
    let bound = listener.local_addr().map_err(MonitorError::Serve)?;
    tracing::info!(%bound, interval_ms = config.interval.as_millis() as u64, "monitor listening");
    let board = Arc::new(Board::default());
    let app = http::router(
        board.clone(),
        sampler.targets().to_vec(),
        sampler.http().clone(),
    );
    // Owner: this function, which awaits it after the server stops.
    let sampling = tokio::spawn(sampler.run(board, shutdown.clone()));
    if let Some(ready) = ready {
        let _ = ready.send(bound);
    }
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .await
        .map_err(MonitorError::Serve);
    // The server only returns early on an error: stop sampling too.
    shutdown.cancel();
    let _ = sampling.await;
    served?;
    Ok(())
}

/// One sample without history, for `fleet status` when no monitor runs: offset and time lag
/// are exact; rates, trends and the window rules (WARN, STALLED) need more than one sample,
/// so a lagging group with consumers reads OK ("too few samples"), one without reads
/// STOPPED.
pub async fn snapshot(
    config: &MonitorConfig,
    topology: &Topology,
) -> Result<Overview, MonitorError> {
    let mut sampler = Sampler::new(config, topology)?;
    let (frame, _) = sampler.sample().await;
    sampler.close().await;
    Ok(frame.overview)
}

/// The overview from a running monitor (`fleet status --monitor URL`), e.g.
/// `http://127.0.0.1:9090`.
pub async fn fetch_overview(monitor_url: &str) -> Result<Overview, MonitorError> {
    let url = format!("{}/api/overview", monitor_url.trim_end_matches('/'));
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .no_proxy()
        .build()
        .map_err(MonitorError::HttpClient)?;
    let response = client
        .get(&url)
        .send()
        .await
        .map_err(|source| MonitorError::Http {
            url: url.clone(),
            source,
        })?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        return Err(MonitorError::Answered { url, status, body });
    }
    response
        .json::<Overview>()
        .await
        .map_err(|source| MonitorError::Http { url, source })
}
