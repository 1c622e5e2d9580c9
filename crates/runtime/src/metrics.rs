//! The metrics every processor exposes on `/metrics`. Labels are topics and failure kinds,
//! never record data (order or user ids would explode cardinality).

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub records_in: IntCounterVec,
    pub records_out: IntCounterVec,
    pub failures: IntCounterVec,
    pub dead_lettered: IntCounterVec,
    pub retries: IntCounterVec,
    pub processing_seconds: HistogramVec,
    /// Age of an input record (now − its timestamp) when the driver takes it: producer
    /// queue + broker append + fetch wait + consumer queue, the hop's waiting time.
    pub record_age_seconds: HistogramVec,
    pub commit_seconds: Histogram,
    pub in_flight: IntGauge,
    pub restored_records: prometheus::IntCounter,
    /// Changelog records written (state batches).
    pub changelog_records: prometheus::IntCounter,
    /// Periodic snapshots written.
    pub snapshots: prometheus::IntCounter,
    pub timers_fired: prometheus::IntCounter,
    pub assigned_partitions: IntGauge,
}

impl Metrics {
    pub fn new(processor: &str, instance: u16) -> Self {
        let registry = Registry::new_custom(
            Some("storefleet".into()),
            Some(
                [
                    ("processor".to_string(), processor.to_string()),
                    ("instance".to_string(), instance.to_string()),
                ]
                .into(),
            ),
        )
        .expect("static metric registry");
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("static metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let records_in = counter("records_in_total", "Input records consumed", &["topic"]);
        let records_out = counter(
            "records_out_total",
            "Output records acknowledged",
            &["topic"],
        );
        let failures = counter("failures_total", "Failed handling attempts", &["kind"]);
        let dead_lettered = counter(
            "dead_lettered_total",
            "Records sent to a dead-letter topic",
            &["topic", "error_kind"],
        );
        let retries = counter("retries_total", "Retried handling attempts", &["kind"]);
        let processing_seconds = HistogramVec::new(
            HistogramOpts::new(
                "processing_seconds",
                "Decode + handle time per input record",
            )
            .buckets(prometheus::exponential_buckets(0.00001, 4.0, 10).expect("buckets")),
            &["topic"],
        )
        .expect("static metric");
        registry
            .register(Box::new(processing_seconds.clone()))
            .expect("unique metric");
        let record_age_seconds = HistogramVec::new(
            HistogramOpts::new(
                "record_age_seconds",
                "Input record age (now - record timestamp) when its handling starts",
            )
            .buckets(prometheus::exponential_buckets(0.0005, 1.5, 26).expect("buckets")),
            &["topic"],
        )
        .expect("static metric");
        registry
            .register(Box::new(record_age_seconds.clone()))
            .expect("unique metric");
        let commit_seconds = Histogram::with_opts(
            HistogramOpts::new("commit_seconds", "Offset commit latency")
                .buckets(prometheus::exponential_buckets(0.0005, 3.0, 10).expect("buckets")),
        )
        .expect("static metric");
        registry
            .register(Box::new(commit_seconds.clone()))
            .expect("unique metric");
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("static metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let plain = |name: &str, help: &str| {
            let c = prometheus::IntCounter::new(name, help).expect("static metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let restored_records = plain(
            "restored_records_total",
            "Changelog records applied while restoring state",
        );
        let timers_fired = plain("timers_fired_total", "Durable timers fired");
        let changelog_records = plain("changelog_records_total", "State changelog records written");
        let snapshots = plain("snapshots_total", "Periodic state snapshots written");
        let in_flight = gauge(
            "in_flight_records",
            "Records whose outputs await acknowledgement",
        );
        let assigned_partitions = gauge(
            "assigned_partitions",
            "Input partitions assigned to this instance",
        );
        Self {
            registry,
            records_in,
            records_out,
            failures,
            dead_lettered,
            retries,
            processing_seconds,
            record_age_seconds,
            commit_seconds,
            in_flight,
            restored_records,
            changelog_records,
            snapshots,
            timers_fired,
            assigned_partitions,
        }
    }

    /// Records the age of an input record with `timestamp_ms` (CreateTime) as it is taken.
    pub fn observe_age(&self, topic: &str, timestamp_ms: Option<i64>) {
        if let Some(ts) = timestamp_ms {
            let age = (crate::now_ms() - ts).max(0) as f64 / 1000.0;
            self.record_age_seconds
                .with_label_values(&[topic])
                .observe(age);
        }
    }

    /// The registry, for a component that adds metrics of its own (a connector).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Plus what the processor registered in the process-wide default registry (its own
        // domain metrics: one processor runs per process).
        let mut families = self.registry.gather();
        families.extend(prometheus::gather());
        let _ = TextEncoder::new().encode(&families, &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}
