#[path = "../src/bench_registry.rs"]
mod bench_registry;
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tmp_bench() {
    bench_registry::registry(300, 10_000, 16).await.unwrap();
}
