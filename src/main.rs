//! `fleet`: the one Storefleet binary. It only parses the command line and wires library
//! crates together; every capability lives in a crate (see ARCHITECTURE.md).

mod bench;
mod bench_cdc;
mod bench_checkout;
mod bench_inventory;
mod bench_payment;
mod bench_registry;
mod bench_state;
mod bench_storefront;
mod demo;
mod load;
mod orders;
mod processors;
mod supervisor;

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
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
    },
    /// Shoppers against a running fleet's storefront, and a report computed from the
    /// fleet's topics, databases and the gateway's ledger.
    Load {
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
    },
    /// Run the payment gateway simulator (the stack starts it): a real HTTP card processor
    /// with an in-memory ledger and injectable faults (also changeable at runtime through
    /// `PUT /v1/faults`).
    GatewaySim {
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
    },
    /// Orders: one order's saga and history, or every STUCK saga.
    Orders {
        #[command(subcommand)]
        action: OrdersAction,
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
        what: BenchWhat,
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

#[derive(Subcommand)]
enum BenchWhat {
    /// Records/s through the stateless shipping processor beside the raw broker figure.
    Runtime {
        #[arg(long, default_value_t = 100_000)]
        records: u64,
        #[arg(long, default_value_t = 6)]
        partitions: i32,
        /// Run on a private broker with this storage engine (`memory`, `sqlite` or `postgres`)
        /// instead of the stack's, to separate the runtime's cost from the storage engine's.
        #[arg(long)]
        engine: Option<bench::Engine>,
    },
    /// Schema registry over loopback HTTP: registrations/s of new schemas, idempotent
    /// re-registrations/s and id lookups/s, for the stack's Kafka-backed registry and beside
    /// it an in-process one with memory storage.
    Registry {
        /// New distinct schemas to register (one subject each).
        #[arg(long, default_value_t = 500)]
        schemas: usize,
        /// `GET /schemas/ids/{id}` requests.
        #[arg(long, default_value_t = 20_000)]
        lookups: usize,
        /// Requests in flight at most.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
    },
    /// The CDC connector on the stack's PostgreSQL: initial-snapshot rows/s, then streamed
    /// row changes/s and commit → consumer latency, in a scratch database.
    Cdc {
        /// Rows present before the connector starts (read by the snapshot).
        #[arg(long, default_value_t = 100_000)]
        snapshot_rows: u64,
        /// Rows inserted while streaming.
        #[arg(long, default_value_t = 100_000)]
        stream_rows: u64,
        /// Rows per streamed transaction.
        #[arg(long, default_value_t = 100)]
        batch: u64,
        /// Streamed rows per second (0: as fast as one connection inserts).
        #[arg(long, default_value_t = 0)]
        rate: u64,
        /// Produce to a private broker with this storage engine instead of the stack's.
        #[arg(long)]
        engine: Option<bench::Engine>,
    },
    /// Holds/s at the inventory ledger: orders' HOLD commands spread over many products,
    /// then a flash sale on one hot product beside them.
    Inventory {
        #[arg(long, default_value_t = 20_000)]
        orders: usize,
        #[arg(long, default_value_t = 1_000)]
        products: usize,
        /// Run on a private broker with this storage engine instead of the stack's.
        #[arg(long)]
        engine: Option<bench::Engine>,
    },
    /// Payments/s through the payment processors against the gateway simulator: no faults,
    /// then 10% slow calls, then 10% calls that hang past the timeout (retried via the topic).
    Payment {
        #[arg(long, default_value_t = 20_000)]
        payments: usize,
        /// The gateway's latency per call (ms; jitter one fifth of it).
        #[arg(long, default_value_t = 20)]
        latency_ms: u64,
        /// Payments in flight per instance.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Run on a private broker with this storage engine instead of the stack's.
        #[arg(long)]
        engine: Option<bench::Engine>,
    },
    /// Checkouts through the whole order path (every processor its own process, against the
    /// gateway simulator): the raw broker's round trip and throughput, open-loop latency
    /// request -> PLACED at each rate, a burst's checkouts/s; per phase, records and CPU ms
    /// per checkout and the time per hop.
    Checkout {
        /// Open-loop rates (checkouts/s), each run for --seconds.
        #[arg(long, value_delimiter = ',', default_value = "50,300,1100")]
        rates: Vec<u64>,
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// Checkouts sent at once after the open-loop phases (0: none).
        #[arg(long, default_value_t = 20_000)]
        burst: usize,
        /// The gateway's latency per call (ms; jitter one fifth of it).
        #[arg(long, default_value_t = 5)]
        gateway_latency_ms: u64,
        /// Instances of each processor.
        #[arg(long, default_value_t = 1)]
        instances: u16,
        /// Partitions of every topic of the run (default: as in the topology).
        #[arg(long)]
        partitions: Option<u32>,
        /// Run on a private broker with this storage engine instead of the stack's.
        #[arg(long)]
        engine: Option<bench::Engine>,
    },
    /// Requests/s and latency of the storefront's product and cart endpoints (one instance
    /// in this process, on the stack's Redis and seeded catalog).
    Storefront {
        /// Seconds per phase.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// HTTP clients sending back to back.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
    },
    /// Restore time of one partition's state: N keys from the changelog alone, then from a
    /// local snapshot plus the changelog's tail (private broker).
    StateRestore {
        /// Keys in the state (one changelog batch each).
        #[arg(long, default_value_t = 1_000_000)]
        keys: u64,
        /// Batches appended after the snapshot.
        #[arg(long, default_value_t = 10_000)]
        tail: u64,
        /// Storage engine of the private broker.
        #[arg(long, value_enum, default_value_t = bench::Engine::Memory)]
        engine: bench::Engine,
    },
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
    match cli.command {
        Command::Validate => validate(&cli.topology),
        Command::Stack { action } => stack(&cli.topology, action).await,
        Command::Registry { listen, memory } => registry(listen, memory).await,
        Command::GatewaySim {
            listen,
            latency_ms,
            jitter_ms,
            slow_rate,
            slow_ms,
            error_rate,
            timeout_rate,
            lost_rate,
            decline_rate,
            rate_limit_per_sec,
        } => {
            let config = gateway_sim::GatewayConfig {
                latency_ms,
                jitter_ms,
                slow_rate,
                slow_ms,
                error_rate,
                timeout_rate,
                lost_rate,
                decline_rate,
                rate_limit_per_sec,
                ..Default::default()
            };
            config
                .validate()
                .map_err(|e| anyhow::anyhow!("gateway-sim: {e}"))?;
            gateway_sim::bind_and_serve(listen, config, shutdown_on_signals()).await?;
            Ok(())
        }
        Command::Orders { action } => {
            let topology = load(&cli.topology)?;
            match action {
                OrdersAction::Status { order } => orders::status(&topology, &order).await,
                OrdersAction::Stuck => orders::stuck(&topology).await,
            }
        }
        Command::Keys { action } => {
            let topology = load(&cli.topology)?;
            keys(&topology, action).await
        }
        Command::Dlq { action } => {
            let topology = load(&cli.topology)?;
            dlq::run(action, &runtime::StackEnv::from_env()?, &topology).await
        }
        Command::Schemas {
            action: SchemasAction::Push,
        } => {
            let topology = load(&cli.topology)?;
            let config = stack_config()?;
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
        } => {
            let topology = load(&cli.topology)?;
            let shutdown = shutdown_on_signals();
            processors::run(&topology, &processor, instance, shutdown).await
        }
        Command::Connect {
            connector,
            resnapshot,
        } => {
            let topology = load(&cli.topology)?;
            processors::connect(&topology, &connector, resnapshot, shutdown_on_signals()).await
        }
        Command::Up {
            monitor,
            no_monitor,
        } => {
            let topology = load(&cli.topology)?;
            let monitor = (!no_monitor).then_some(monitor);
            supervisor::run_fleet(&cli.topology, &topology, monitor, shutdown_on_signals()).await
        }
        Command::Monitor {
            listen,
            interval_ms,
        } => {
            let topology = load(&cli.topology)?;
            anyhow::ensure!(interval_ms >= 100, "--interval-ms must be at least 100");
            let mut config = monitor::MonitorConfig::new(listen, &runtime::StackEnv::from_env()?);
            config.interval = std::time::Duration::from_millis(interval_ms);
            let (ready, bound) = tokio::sync::oneshot::channel();
            let shutdown = shutdown_on_signals();
            let serving = tokio::spawn(monitor::serve(config, topology, shutdown, Some(ready)));
            if let Ok(address) = bound.await {
                info!(%address, "lag monitor: dashboard at http://{address}/");
            }
            serving.await.context("monitor task")?
        }
        Command::Status { monitor } => {
            let topology = load(&cli.topology)?;
            let url = monitor.unwrap_or_else(|| "http://127.0.0.1:9300".to_string());
            let overview = match monitor::fetch_overview(&url).await {
                Ok(overview) => overview,
                Err(e) => {
                    eprintln!("no monitor at {url} ({e}); sampling once now");
                    let config = monitor::MonitorConfig::new(
                        "127.0.0.1:0".parse()?,
                        &runtime::StackEnv::from_env()?,
                    );
                    monitor::snapshot(&config, &topology).await?
                }
            };
            print!("{}", monitor::render_status(&overview));
            Ok(())
        }
        Command::Demo {
            rate,
            duration,
            poison,
            stop,
        } => {
            let options = demo::DemoOptions {
                rate,
                duration_secs: duration,
                poison,
                stop,
            };
            demo::run(&cli.topology, options).await
        }
        Command::Load {
            storefront,
            api_key,
            rate,
            duration,
            flash_products,
            flash_stock,
            settle,
            poison,
            seed,
        } => {
            let topology = load(&cli.topology)?;
            let storefronts = if storefront.is_empty() {
                demo::storefront_urls(&topology)
            } else {
                storefront
            };
            anyhow::ensure!(
                rate > 0.0 && duration > 0,
                "--rate and --duration must be positive"
            );
            let options = load::LoadOptions {
                storefronts,
                api_key,
                rate,
                duration: std::time::Duration::from_secs(duration),
                flash_products,
                flash_stock,
                settle: std::time::Duration::from_secs(settle),
                seed,
                poison,
            };
            let report = load::run(&topology, options).await?;
            print!("{}", report.text);
            anyhow::ensure!(
                report.oversold_units == 0
                    && report.duplicate_charges == 0
                    && report.unsettled == 0,
                "an invariant was broken (see the report)"
            );
            Ok(())
        }
        Command::Seed => {
            let config = stack_config()?;
            let root = cli.topology.parent().unwrap_or(std::path::Path::new("."));
            let csv = seed::fetch_dataset(&root.join("scripts/fetch-dataset.sh")).await?;
            let catalog = config.postgres_url("catalog");
            let warehouse = config.postgres_url("warehouse");
            let report = seed::seed(&catalog, &warehouse, &csv)
                .await
                .context("seeding the stack's databases (is it up? `fleet stack up`)")?;
            println!("{report}");
            Ok(())
        }
        Command::Bench {
            what:
                BenchWhat::Runtime {
                    records,
                    partitions,
                    engine,
                },
        } => {
            let topology = load(&cli.topology)?;
            bench::runtime(&topology, records, partitions, engine).await
        }
        Command::Bench {
            what:
                BenchWhat::Registry {
                    schemas,
                    lookups,
                    concurrency,
                },
        } => bench_registry::registry(schemas, lookups, concurrency).await,
        Command::Bench {
            what:
                BenchWhat::Cdc {
                    snapshot_rows,
                    stream_rows,
                    batch,
                    rate,
                    engine,
                },
        } => {
            let topology = load(&cli.topology)?;
            bench_cdc::cdc(&topology, snapshot_rows, stream_rows, batch, rate, engine).await
        }
        Command::Bench {
            what:
                BenchWhat::Inventory {
                    orders,
                    products,
                    engine,
                },
        } => {
            let topology = load(&cli.topology)?;
            bench_inventory::inventory(&topology, orders, products, engine).await
        }
        Command::Bench {
            what:
                BenchWhat::Payment {
                    payments,
                    latency_ms,
                    concurrency,
                    engine,
                },
        } => {
            let topology = load(&cli.topology)?;
            let bench = bench_payment::PaymentBench {
                payments,
                latency_ms,
                concurrency,
                engine,
            };
            bench_payment::payment(&topology, bench).await
        }
        Command::Bench {
            what:
                BenchWhat::Checkout {
                    rates,
                    seconds,
                    burst,
                    gateway_latency_ms,
                    instances,
                    partitions,
                    engine,
                },
        } => {
            let topology = load(&cli.topology)?;
            let bench = bench_checkout::CheckoutBench {
                engine,
                burst,
                rates,
                seconds,
                gateway_latency_ms,
                instances,
                partitions,
            };
            bench_checkout::checkout(&topology, bench).await
        }
        Command::Bench {
            what:
                BenchWhat::Storefront {
                    seconds,
                    concurrency,
                },
        } => {
            let topology = load(&cli.topology)?;
            let bench = bench_storefront::StorefrontBench {
                seconds,
                concurrency,
            };
            bench_storefront::storefront(&topology, bench).await
        }
        Command::Bench {
            what: BenchWhat::StateRestore { keys, tail, engine },
        } => bench_state::state_restore(keys, tail, engine).await,
    }
}

fn load(path: &std::path::Path) -> Result<topology::Topology> {
    topology::load(path).with_context(|| format!("loading {}", path.display()))
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
    let topology = load(topology_path)?;
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

/// The stack's settings, with `fleet registry` (this very binary) as the registry command.
fn stack_config() -> Result<stack::StackConfig> {
    let exe = std::env::current_exe().context("locating the fleet binary")?;
    stack::StackConfig::from_env(vec![exe.to_string_lossy().into_owned(), "registry".into()])
        .map_err(anyhow::Error::msg)
}

async fn stack(topology_path: &std::path::Path, action: StackAction) -> Result<()> {
    let config = stack_config()?;
    match action {
        StackAction::Up => {
            let topology = load(topology_path)?;
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

/// The storefront's database, as the topology names it, on the stack's server.
fn storefront_database(topology: &topology::Topology) -> Result<String> {
    let database = topology
        .processors
        .iter()
        .find_map(|(_, p)| match p {
            topology::ProcessorParams::Storefront(s) => Some(s.database.clone()),
            _ => None,
        })
        .context("no storefront in the topology")?;
    Ok(runtime::postgres_database_url(
        &runtime::StackEnv::from_env()?.postgres_url,
        &database,
    )?)
}

async fn keys(topology: &topology::Topology, action: KeysAction) -> Result<()> {
    let url = storefront_database(topology)?;
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
