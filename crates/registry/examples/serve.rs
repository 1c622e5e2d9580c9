//! Runs the registry by hand: `cargo run -p registry --example serve -- ADDR [BOOTSTRAP TOPIC]`.

use registry::{serve, RegistryConfig, Storage};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let listen = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:8081".into())
        .parse()?;
    let storage = match (args.next(), args.next()) {
        (Some(bootstrap_servers), Some(topic)) => Storage::Kafka {
            bootstrap_servers,
            topic,
        },
        _ => Storage::Memory,
    };
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    // Owner: the process: the shutdown signal itself, holding nothing.
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        stop.cancel();
    });
    let (ready, address) = tokio::sync::oneshot::channel();
    // Owner: this function, which awaits the handle.
    let server = tokio::spawn(serve(
        RegistryConfig { listen, storage },
        shutdown,
        Some(ready),
    ));
    if let Ok(address) = address.await {
        println!("listening on {address}");
    }
    server.await??;
    Ok(())
}
