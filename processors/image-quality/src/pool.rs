//! The bounded CPU pool that decodes and scores: `cpu_threads` threads of its own, so a burst
//! of large images never occupies the async runtime's threads (which keep downloading and
//! committing). The queue in front of it is bounded by the driver's `concurrency` (one job per
//! record in flight at most).
//!
//! `imageq::assess` does not panic on any input (its tests feed it mutated files); a panic
//! would still be caught here and answered as a corrupt image, so one file can never take the
//! processor down.

use std::panic::AssertUnwindSafe;

use imageq::{Assessment, Policy, Reason};

pub struct CpuPool {
    pool: rayon::ThreadPool,
}

impl CpuPool {
    pub fn new(threads: usize) -> Result<Self, String> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .thread_name(|i| format!("image-cpu-{i}"))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self { pool })
    }

    /// Scores `bytes` on a pool thread.
    pub async fn assess(
        &self,
        bytes: Vec<u8>,
        content_type: Option<String>,
        policy: Policy,
    ) -> Assessment {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let size = bytes.len();
        self.pool.spawn(move || {
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
                imageq::assess(&bytes, content_type.as_deref(), &policy)
            }));
            // The receiver is gone only when the record's task was abandoned at shutdown.
            let _ = tx.send(outcome.ok());
        });
        match rx.await {
            Ok(Some(assessment)) => assessment,
            _ => panicked(size),
        }
    }
}

fn panicked(size: usize) -> Assessment {
    Assessment {
        format: None,
        width: None,
        height: None,
        orientation: 1,
        size_bytes: size as u64,
        blur_score: None,
        tiers: None,
        watermark: None,
        reasons: vec![Reason::Corrupt],
        detail: Some("the checker failed on this file (a bug, not the file's fault)".into()),
    }
}
