//! The metrics every processor exposes on `/metrics`. Labels are topics and failure kinds,
//! never record data (order or user ids would explode cardinality).

use prometheus::core::Collector;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

/// The one way metrics are registered, in every crate: on a registry of one's own (the
/// runtime's, which connectors share; the monitor's), or on the process-wide default one (a
/// processor's domain metrics). Definitions are static, so a bad one is a bug and panics, and
/// so does a name registered twice on one's own registry. On the process-wide registry a
/// second registration is expected (a second instance in one process: tests, benches): the
/// first stays registered and the new metric is returned unregistered.
#[derive(Clone, Copy)]
pub struct Registrar<'a> {
    registry: &'a Registry,
    shared: bool,
}

impl<'a> Registrar<'a> {
    pub fn on(registry: &'a Registry) -> Self {
        Self {
            registry,
            shared: false,
        }
    }

    /// The process-wide default registry, which `/metrics` serves beside the runtime's.
    pub fn process() -> Registrar<'static> {
        Registrar {
            registry: prometheus::default_registry(),
            shared: true,
        }
    }

    /// Registers what `built` built (any metric type).
    pub fn metric<M>(self, built: prometheus::Result<M>) -> M
    where
        M: Collector + Clone + 'static,
    {
        let metric = built.expect("static metric definition");
        match self.registry.register(Box::new(metric.clone())) {
            Ok(()) => metric,
            Err(prometheus::Error::AlreadyReg) if self.shared => metric,
            Err(e) => panic!("metric does not fit its registry: {e}"),
        }
    }

    pub fn counter(self, name: &str, help: &str) -> IntCounter {
        self.metric(IntCounter::new(name, help))
    }

    pub fn counter_vec(self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.metric(IntCounterVec::new(Opts::new(name, help), labels))
    }

    pub fn gauge(self, name: &str, help: &str) -> IntGauge {
        self.metric(IntGauge::new(name, help))
    }
}

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
    pub restored_records: IntCounter,
    /// Changelog records written (state batches).
    pub changelog_records: IntCounter,
    /// Periodic snapshots written.
    pub snapshots: IntCounter,
    pub timers_fired: IntCounter,
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
        let register = Registrar::on(&registry);
        let records_in =
            register.counter_vec("records_in_total", "Input records consumed", &["topic"]);
        let records_out = register.counter_vec(
            "records_out_total",
            "Output records acknowledged",
            &["topic"],
        );
        let failures =
            register.counter_vec("failures_total", "Failed handling attempts", &["kind"]);
        let dead_lettered = register.counter_vec(
            "dead_lettered_total",
            "Records sent to a dead-letter topic",
            &["topic", "error_kind"],
        );
        let retries = register.counter_vec("retries_total", "Retried handling attempts", &["kind"]);
        let processing_seconds = register.metric(HistogramVec::new(
            HistogramOpts::new(
                "processing_seconds",
                "Decode + handle time per input record",
            )
            .buckets(prometheus::exponential_buckets(0.00001, 4.0, 10).expect("buckets")),
            &["topic"],
        ));
        let record_age_seconds = register.metric(HistogramVec::new(
            HistogramOpts::new(
                "record_age_seconds",
                "Input record age (now - record timestamp) when its handling starts",
            )
            .buckets(prometheus::exponential_buckets(0.0005, 1.5, 26).expect("buckets")),
            &["topic"],
        ));
        let commit_seconds = register.metric(Histogram::with_opts(
            HistogramOpts::new("commit_seconds", "Offset commit latency")
                .buckets(prometheus::exponential_buckets(0.0005, 3.0, 10).expect("buckets")),
        ));
        let restored_records = register.counter(
            "restored_records_total",
            "Changelog records applied while restoring state",
        );
        let timers_fired = register.counter("timers_fired_total", "Durable timers fired");
        let changelog_records =
            register.counter("changelog_records_total", "State changelog records written");
        let snapshots = register.counter("snapshots_total", "Periodic state snapshots written");
        let in_flight = register.gauge(
            "in_flight_records",
            "Records whose outputs await acknowledgement",
        );
        let assigned_partitions = register.gauge(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_registered_twice_on_ones_own_registry_is_a_bug() {
        let registry = Registry::new();
        Registrar::on(&registry).counter("things_total", "Things");
        let again = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Registrar::on(&registry).counter("things_total", "Things")
        }));
        assert!(again.is_err());
    }

    #[test]
    fn a_second_instance_on_the_process_registry_leaves_the_first_registered() {
        let first = Registrar::process().counter("registrar_test_things_total", "Things");
        let again = Registrar::process().counter("registrar_test_things_total", "Things");
        first.inc();
        again.inc_by(5);
        let served: Vec<f64> = prometheus::gather()
            .iter()
            .filter(|f| f.name() == "registrar_test_things_total")
            .map(|f| f.get_metric()[0].get_counter().get_value())
            .collect();
        assert_eq!(served, vec![1.0]);
    }

    #[test]
    fn the_runtime_metrics_keep_their_names() {
        let metrics = Metrics::new("shipping", 0);
        metrics.records_in.with_label_values(&["orders"]).inc();
        metrics.commit_seconds.observe(0.01);
        let text = metrics.render();
        for name in [
            "storefleet_records_in_total",
            "storefleet_commit_seconds",
            "storefleet_assigned_partitions",
            "storefleet_timers_fired_total",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
        assert!(text.contains(r#"processor="shipping""#));
    }
}
