//! What the monitor watches and how often: [`MonitorConfig`].

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use runtime::StackEnv;

/// The monitor's settings. [`MonitorConfig::new`] fills the defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorConfig {
    /// Where the dashboard, the JSON API and `/metrics` are served (port 0: any free port).
    pub listen: SocketAddr,
    /// Time between samples. Default 5 s: on the stack's SQLite broker under the demo's load
    /// a sample costs up to seconds of broker time (measured), so sampling every 2 s competed
    /// with the fleet.
    pub interval: Duration,
    /// How long the charts' history keeps samples. Default 10 min.
    pub history: Duration,
    pub bootstrap_servers: String,
    /// Where the processors' admin ports listen (`admin_port + instance`).
    pub admin_host: IpAddr,
    /// Samples a status rule looks at (the Burrow-style window). Default 10 (50 s at the
    /// default 5 s interval).
    pub window: usize,
    /// Bound on each instance's `/health` and `/metrics` answer. Default 1 s.
    pub probe_timeout: Duration,
    /// Bound on each Kafka request of a sample. Default 5 s.
    pub kafka_timeout: Duration,
}

impl MonitorConfig {
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
    pub const DEFAULT_HISTORY: Duration = Duration::from_secs(600);
    pub const DEFAULT_WINDOW: usize = 10;

    pub fn new(listen: SocketAddr, stack: &StackEnv) -> Self {
        Self {
            listen,
            interval: Self::DEFAULT_INTERVAL,
            history: Self::DEFAULT_HISTORY,
            bootstrap_servers: stack.bootstrap_servers.clone(),
            admin_host: stack.admin_host,
            window: Self::DEFAULT_WINDOW,
            probe_timeout: Duration::from_secs(1),
            kafka_timeout: Duration::from_secs(5),
        }
    }
}
