//! `fleet`: the one Storefleet binary. It parses the command line and wires library crates
//! together (see ARCHITECTURE.md): the processor list in `wiring`, the benchmarks in `bench`,
//! the load generator and the demo's workload in `loadgen`. What lives here besides: `fleet
//! up`'s process supervisor (`supervisor.rs`), the demo's start sequence (`demo.rs`) and the
//! order support commands (`orders.rs`).

mod demo;
mod images_cmd;
mod orders;
mod recs_cmd;
mod supervisor;

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing::info;

#[derive(Parser)]
#[command(
    name = "fleet",
    version,
    about = "Storefleet: an e-commerce backend as a fleet of Kafka stream processors"
)]
struct Cli {
    /// The wiring file.
    #[arg(long, global = true, default_value = "topology.yaml")]
    topology: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check topology.yaml and every schema it names; report all problems at once.
    Validate,
    /// Manage the local stack (broker, schema registry, PostgreSQL, Redis).
    Stack {
        #[command(subcommand)]
        action: StackAction,
    },
    /// Run the schema registry (the stack starts it).
    Registry {
        #[arg(long, default_value = "127.0.0.1:18081")]
        listen: std::net::SocketAddr,
        /// Keep state in memory only (tests); default is the `_schemas` topic.
        #[arg(long)]
        memory: bool,
    },
    /// Register every schema of the topology with the registry.
    Schemas {
        #[command(subcommand)]
        action: SchemasAction,
    },
    /// Run one instance of one processor in the foreground.
    Run {
        processor: String,
        #[arg(long, default_value_t = 0)]
        instance: u16,
    },
    /// Run one connector (PostgreSQL CDC) in the foreground.
    Connect {
        connector: String,
        /// Drop the connector's replication slot and snapshot progress first, then take a new
        /// initial snapshot: the recovery from an invalidated slot.
        #[arg(long)]
        resnapshot: bool,
    },
    /// Launch the whole fleet from the topology, one OS process per instance, and the lag
    /// monitor; restarts a crashed one with backoff; Ctrl-C or SIGTERM stops them all cleanly.
    Up {
        /// Where the lag monitor (dashboard, /metrics) listens.
        #[arg(long, default_value = "127.0.0.1:9300")]
        monitor: std::net::SocketAddr,
        /// Do not start the lag monitor.
        #[arg(long)]
        no_monitor: bool,
    },
    /// The consumer-lag monitor: samples every group of the topology (offset lag, time lag,
    /// consume rate, status) and serves the fleet dashboard, its JSON API and /metrics.
    Monitor {
        #[arg(long, default_value = "127.0.0.1:9300")]
        listen: std::net::SocketAddr,
        /// Milliseconds between samples.
        #[arg(long, default_value_t = 5_000)]
        interval_ms: u64,
    },
    /// The fleet overview in the terminal: from a running monitor, or one sample taken now.
    Status {
        /// A running monitor's URL (default: the one `fleet up` starts, if it answers).
        #[arg(long)]
        monitor: Option<String>,
    },
    /// The main job: stack up, seed, fleet up, shoppers through the storefront, a report.
    Demo {
        /// Shopper sessions started per second.
        #[arg(long, default_value_t = 60.0)]
        rate: f64,
        /// Seconds of load.
        #[arg(long, default_value_t = 90)]
        duration: u64,
        /// Undecodable records sent to the checkout-request topic mid-run.
        #[arg(long, default_value_t = 10)]
        poison: u64,
        /// Stop the fleet after the report (by default it stays up, with its dashboard, until
        /// `fleet stack down`).
        #[arg(long)]
        stop: bool,
        /// A gateway without faults. By default the gateway simulator answers 2% of calls
        /// with errors, lets 1% time out, loses 1% of answers after applying them and declines
        /// 3% of cards, so retries, voids, refunds and releases happen and the report's money
        /// checks are tested.
        #[arg(long)]
        no_faults: bool,
    },
    /// Shoppers against a running fleet's storefront, and a report computed from the
    /// fleet's topics, databases and the gateway's ledger.
    Load(LoadArgs),
    /// Run the payment gateway simulator (the stack starts it): a real HTTP card processor
    /// with an in-memory ledger and injectable faults (also changeable at runtime through
    /// `PUT /v1/faults`).
    GatewaySim(GatewaySimArgs),
    /// Orders: one order's saga and history, or every STUCK saga.
    Orders {
        #[command(subcommand)]
        action: OrdersAction,
    },
    /// Search: rebuild every replica's index from the compacted topics (one at a time, no
    /// downtime), or run a query against one.
    Search {
        #[command(subcommand)]
        action: SearchAction,
    },
    /// Recommendations: train now (the same run the schedule makes), or evaluate the model
    /// offline against a popularity baseline.
    Recs {
        #[command(subcommand)]
        action: recs_cmd::RecsAction,
    },
    /// Image quality: check URLs or files now, the verdicts on file by image or product, the
    /// products flagged for review, re-check requests.
    Images {
        #[command(subcommand)]
        action: images_cmd::ImagesAction,
    },
    /// Storefront API keys: create one (shown once), list, revoke.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Dead letters: list them, inspect one, redrive them (deferred, with jitter).
    Dlq {
        #[command(subcommand)]
        action: dlq::DlqAction,
    },
    /// Fill the stack's catalog and warehouse databases from the product data set (fetched
    /// once into the cache); a re-seed writes only what changed.
    Seed,
    /// Benchmarks that print figures.
    Bench {
        #[command(subcommand)]
        what: bench::Command,
    },
}

#[derive(Subcommand)]
enum OrdersAction {
    /// The saga of ORDER (state, request, history) from the checkout instance owning it.
    Status { order: String },
    /// Every order whose latest status is STUCK (its compensation ran out of attempts).
    Stuck,
}

#[derive(Subcommand)]
enum SearchAction {
    /// Reindex from the compacted topics into a fresh index on each instance and swap it in
    /// once it has caught up; the old index answers until then.
    Rebuild {
        /// Give up on an instance after this many seconds.
        #[arg(long, default_value_t = 900)]
        timeout: u64,
    },
    /// Print one query's answer (JSON) from the first instance.
    Query {
        /// Query text.
        q: String,
        /// More parameters, NAME=VALUE (category=Furniture, sort=price_asc, in_stock=true…).
        #[arg(long = "param", short = 'p')]
        params: Vec<String>,
    },
}

#[derive(Subcommand)]
enum KeysAction {
    /// A new API key for CLIENT, printed once (only its hash is stored).
    Create { client: String },
    /// Every key: prefix, client, created, revoked.
    List,
    /// Revoke the key with this prefix (as `keys list` shows it) or this key.
    Revoke { prefix_or_key: String },
}

#[derive(Subcommand)]
enum StackAction {
    Up,
    Down,
    Status,
}

#[derive(Subcommand)]
enum SchemasAction {
    Push,
    /// The CI gate: is every schema of the working tree compatible with the registered one
    /// under its subject's compatibility level? Exits 1 if any is not.
    Check,
}

/// `fleet load`.
#[derive(Args)]
struct LoadArgs {
    /// Storefront base URLs (default: every instance the topology declares).
    #[arg(long, value_delimiter = ',')]
    storefront: Vec<String>,
    /// API key (default: create one for client `loadgen`).
    #[arg(long)]
    api_key: Option<String>,
    /// Shopper sessions started per second.
    #[arg(long, default_value_t = 60.0)]
    rate: f64,
    /// Seconds of load.
    #[arg(long, default_value_t = 60)]
    duration: u64,
    /// New products released for the flash sale, and their units each.
    #[arg(long, default_value_t = 3)]
    flash_products: usize,
    #[arg(long, default_value_t = 40)]
    flash_stock: i32,
    /// Seconds to wait after the load for every accepted order to end.
    #[arg(long, default_value_t = 90)]
    settle: u64,
    #[arg(long, default_value_t = 0)]
    poison: u64,
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

/// `fleet gateway-sim`.
#[derive(Args)]
struct GatewaySimArgs {
    #[arg(long, default_value = "127.0.0.1:18090")]
    listen: std::net::SocketAddr,
    /// Base latency of every mutating call (ms), plus uniform jitter up to --jitter-ms.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    #[arg(long, default_value_t = 0)]
    jitter_ms: u64,
    /// Fraction of calls that take --slow-ms longer.
    #[arg(long, default_value_t = 0.0)]
    slow_rate: f64,
    #[arg(long, default_value_t = 0)]
    slow_ms: u64,
    /// Fraction answered 5xx without applying anything.
    #[arg(long, default_value_t = 0.0)]
    error_rate: f64,
    /// Fraction that hang (nothing applied) until the caller times out.
    #[arg(long, default_value_t = 0.0)]
    timeout_rate: f64,
    /// Fraction applied and then left unanswered: charged, but the caller cannot know.
    #[arg(long, default_value_t = 0.0)]
    lost_rate: f64,
    /// Fraction of payment keys declined (a hash of the key: retries get the same answer).
    #[arg(long, default_value_t = 0.0)]
    decline_rate: f64,
    /// The contract's calls per second (429 beyond it); 0 = unlimited.
    #[arg(long, default_value_t = 0)]
    rate_limit_per_sec: u32,
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,rdkafka=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let load = || wiring::load_topology(&cli.topology);
    match cli.command {
        Command::Validate => validate(&cli.topology),
        Command::Stack { action } => stack(&cli.topology, action).await,
        Command::Registry { listen, memory } => registry(listen, memory).await,
        Command::GatewaySim(args) => gateway_sim(args).await,
        Command::Orders { action } => {
            let topology = load()?;
            match action {
                OrdersAction::Status { order } => orders::status(&topology, &order).await,
                OrdersAction::Stuck => orders::stuck(&topology).await,
            }
        }
        Command::Keys { action } => keys(&load()?, action).await,
        Command::Search { action } => search_command(&load()?, action).await,
        Command::Recs { action } => recs_cmd::run(&load()?, action).await,
        Command::Images { action } => images_cmd::run(&load()?, action).await,
        Command::Dlq { action } => {
            let topology = load()?;
            Ok(dlq::run(action, &runtime::StackEnv::from_env()?, &topology).await?)
        }
        Command::Schemas {
            action: SchemasAction::Push,
        } => {
            let topology = load()?;
            let config = wiring::stack_config()?;
            let n = stack::push_schemas(&config, &topology).await?;
            println!("registered {n} subjects at {}", config.registry_url());
            Ok(())
        }
        Command::Schemas {
            action: SchemasAction::Check,
        } => schemas_check(&cli.topology).await,
        Command::Run {
            processor,
            instance,
        } => Ok(wiring::run(&load()?, &processor, instance, shutdown_on_signals()).await?),
        Command::Connect {
            connector,
            resnapshot,
        } => Ok(wiring::connect(&load()?, &connector, resnapshot, shutdown_on_signals()).await?),
        Command::Up {
            monitor,
            no_monitor,
        } => {
            let topology = load()?;
            let monitor = (!no_monitor).then_some(monitor);
            supervisor::run_fleet(&cli.topology, &topology, monitor, shutdown_on_signals()).await
        }
        Command::Monitor {
            listen,
            interval_ms,
        } => serve_monitor(load()?, listen, interval_ms).await,
        Command::Status { monitor } => status(&load()?, monitor).await,
        Command::Demo {
            rate,
            duration,
            poison,
            stop,
            no_faults,
        } => {
            let workload = loadgen::demo::Workload {
                rate,
                duration: std::time::Duration::from_secs(duration),
                poison,
            };
            demo::run(&cli.topology, workload, stop, !no_faults).await
        }
        Command::Load(args) => shoppers(&load()?, args).await,
        Command::Seed => seed_stack(&cli.topology).await,
        Command::Bench { what } => Ok(bench::run(&cli.topology, what).await?),
    }
}

async fn gateway_sim(args: GatewaySimArgs) -> Result<()> {
    let config = gateway_sim::GatewayConfig {
        latency_ms: args.latency_ms,
        jitter_ms: args.jitter_ms,
        slow_rate: args.slow_rate,
        slow_ms: args.slow_ms,
        error_rate: args.error_rate,
        timeout_rate: args.timeout_rate,
        lost_rate: args.lost_rate,
        decline_rate: args.decline_rate,
        rate_limit_per_sec: args.rate_limit_per_sec,
        ..Default::default()
    };
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("gateway-sim: {e}"))?;
    gateway_sim::bind_and_serve(args.listen, config, shutdown_on_signals()).await?;
    Ok(())
}

async fn serve_monitor(
    topology: topology::Topology,
    listen: std::net::SocketAddr,
    interval_ms: u64,
) -> Result<()> {
    anyhow::ensure!(interval_ms >= 100, "--interval-ms must be at least 100");
    let mut config = monitor::MonitorConfig::new(listen, &runtime::StackEnv::from_env()?);
    config.interval = std::time::Duration::from_millis(interval_ms);
    let (ready, bound) = tokio::sync::oneshot::channel();
    let shutdown = shutdown_on_signals();
    // Owner: this function, which awaits the handle.
    let serving = tokio::spawn(monitor::serve(config, topology, shutdown, Some(ready)));
    if let Ok(address) = bound.await {
        info!(%address, "lag monitor: dashboard at http://{address}/");
    }
    Ok(serving.await.context("monitor task")??)
}

async fn status(topology: &topology::Topology, monitor: Option<String>) -> Result<()> {
    let url = monitor.unwrap_or_else(|| "http://127.0.0.1:9300".to_string());
    let overview = match monitor::fetch_overview(&url).await {
        Ok(overview) => overview,
        Err(e) => {
            eprintln!("no monitor at {url} ({}); sampling once now", e.chain());
            let config = monitor::MonitorConfig::new(
                "127.0.0.1:0".parse()?,
                &runtime::StackEnv::from_env()?,
            );
            monitor::snapshot(&config, topology).await?
        }
    };
    print!("{}", monitor::render_status(&overview));
    Ok(())
}

/// `fleet load`: the shoppers, then their report; an error if an invariant was broken.
async fn shoppers(topology: &topology::Topology, args: LoadArgs) -> Result<()> {
    let storefronts = if args.storefront.is_empty() {
        loadgen::shoppers::storefront_urls(topology)
    } else {
        args.storefront
    };
    anyhow::ensure!(
        args.rate > 0.0 && args.duration > 0,
        "--rate and --duration must be positive"
    );
    let options = loadgen::shoppers::LoadOptions {
        storefronts,
        api_key: args.api_key,
        rate: args.rate,
        duration: std::time::Duration::from_secs(args.duration),
        flash_products: args.flash_products,
        flash_stock: args.flash_stock,
        settle: std::time::Duration::from_secs(args.settle),
        seed: args.seed,
        poison: args.poison,
    };
    let report = loadgen::shoppers::run(topology, options).await?;
    print!("{}", report.text);
    anyhow::ensure!(
        report.oversold_units == 0 && report.duplicate_charges == 0 && report.unsettled == 0,
        "an invariant was broken (see the report)"
    );
    Ok(())
}

async fn seed_stack(topology_path: &std::path::Path) -> Result<()> {
    let config = wiring::stack_config()?;
    let root = topology_path.parent().unwrap_or(std::path::Path::new("."));
    let csv = seed::fetch_dataset(&root.join("scripts/fetch-dataset.sh")).await?;
    let catalog = config.postgres_url("catalog");
    let warehouse = config.postgres_url("warehouse");
    let images = format!("{}/seller-images", config.gateway_url());
    let report = seed::seed(&catalog, &warehouse, &csv, &images)
        .await
        .context("seeding the stack's databases (is it up? `fleet stack up`)")?;
    println!("{report}");
    Ok(())
}

fn validate(path: &std::path::Path) -> Result<()> {
    match topology::load(path) {
        Ok(t) => {
            println!(
                "{}: ok ({} topics, {} processors, {} connectors, {} schema subjects)",
                path.display(),
                t.topics.len(),
                t.processors.len(),
                t.connectors.len(),
                t.subjects().len()
            );
            Ok(())
        }
        Err(topology::TopologyError::Invalid(problems)) => {
            eprintln!("{}: {} problem(s)", path.display(), problems.len());
            for p in &problems {
                eprintln!("  {p}");
            }
            std::process::exit(1);
        }
        Err(e) => bail!(e),
    }
}

/// `fleet schemas check`: one line per subject; exit 1 if any schema would be refused.
async fn schemas_check(topology_path: &std::path::Path) -> Result<()> {
    let topology = wiring::load_topology(topology_path)?;
    let registry_url = runtime::StackEnv::from_env()?.registry_url;
    let verdicts = stack::check_schemas(&registry_url, &topology).await?;
    for verdict in &verdicts {
        println!("{verdict}");
    }
    let incompatible = verdicts.iter().filter(|v| v.is_incompatible()).count();
    println!(
        "{} subjects checked against {registry_url}: {incompatible} incompatible",
        verdicts.len()
    );
    if incompatible > 0 {
        std::process::exit(1);
    }
    Ok(())
}

async fn stack(topology_path: &std::path::Path, action: StackAction) -> Result<()> {
    let config = wiring::stack_config()?;
    match action {
        StackAction::Up => {
            let topology = wiring::load_topology(topology_path)?;
            stack::up(&config, &topology).await?;
            let env = stack::write_env_file(&config)?;
            print_status(&config);
            println!("environment: {}", env.display());
        }
        StackAction::Down => {
            stack::down(&config).await?;
            println!("stack stopped ({})", config.data_dir.display());
        }
        StackAction::Status => print_status(&config),
    }
    Ok(())
}

fn print_status(config: &stack::StackConfig) {
    for (name, up, address) in stack::status(config) {
        println!(
            "{:<32} {:<5} {}",
            name,
            if up { "up" } else { "down" },
            address
        );
    }
}

async fn registry(listen: std::net::SocketAddr, memory: bool) -> Result<()> {
    let storage = if memory {
        registry::Storage::Memory
    } else {
        registry::Storage::Kafka {
            bootstrap_servers: runtime::StackEnv::from_env()?.bootstrap_servers,
            topic: "_schemas".into(),
        }
    };
    let shutdown = shutdown_on_signals();
    info!(%listen, "schema registry starting");
    registry::serve(registry::RegistryConfig { listen, storage }, shutdown, None).await?;
    Ok(())
}

/// A token cancelled on the first SIGINT or SIGTERM.
fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    // Owner: the process. It is the shutdown signal itself (nothing is left to drain it), and
    // it holds nothing: it ends after the first signal or with the process.
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return,
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        info!("shutdown requested");
        trigger.cancel();
    });
    token
}

async fn keys(topology: &topology::Topology, action: KeysAction) -> Result<()> {
    let url = wiring::storefront_database(topology)?;
    match action {
        KeysAction::Create { client } => {
            storefront::domain::check_token("client", &client)
                .map_err(|r| anyhow::anyhow!("{}", r.message))?;
            let key = storefront::keys::create(&url, &client).await?;
            println!("{key}");
            eprintln!("API key for `{client}`: shown once, stored only as its hash");
        }
        KeysAction::List => {
            for (prefix, client, created, revoked) in storefront::keys::list(&url).await? {
                let state = revoked
                    .map(|r| format!("revoked {r}"))
                    .unwrap_or("live".into());
                println!("{prefix}  {client:<20} created {created}  {state}");
            }
        }
        KeysAction::Revoke { prefix_or_key } => {
            let n = storefront::keys::revoke(&url, &prefix_or_key).await?;
            println!("revoked {n} key(s)");
            if n == 0 {
                anyhow::bail!("no live key matches");
            }
        }
    }
    Ok(())
}

async fn search_command(topology: &topology::Topology, action: SearchAction) -> anyhow::Result<()> {
    let urls = search::ops::instance_urls(topology, "127.0.0.1");
    anyhow::ensure!(!urls.is_empty(), "the topology has no search-indexer");
    match action {
        SearchAction::Rebuild { timeout } => {
            search::ops::rebuild(&urls, std::time::Duration::from_secs(timeout), |line| {
                println!("{line}")
            })
            .await?;
        }
        SearchAction::Query { q, params } => {
            let mut pairs = vec![("q".to_string(), q)];
            for p in params {
                let (k, v) = p
                    .split_once('=')
                    .ok_or_else(|| anyhow::anyhow!("--param {p:?} is not NAME=VALUE"))?;
                pairs.push((k.to_string(), v.to_string()));
            }
            let answer = search::ops::query(&urls[0], &pairs).await?;
            println!("{}", serde_json::to_string_pretty(&answer)?);
        }
    }
    Ok(())
}
