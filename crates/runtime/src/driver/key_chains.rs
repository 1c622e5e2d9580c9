//! Per-key order for the pipelined driver: each record waits for the end of the previous
//! in-flight record with the same key, while records of other keys run concurrently.
//!
//! Single writer: the driver loop (the one reader of the consumer) is the only caller of
//! [`KeyChains::chain`]; tasks only signal their own end through their [`Finish`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures::future::{BoxFuture, FutureExt, Shared};
use tokio::sync::oneshot;

/// The end of a record's handling, awaited by the next record with the same key.
pub(super) type Link = Shared<BoxFuture<'static, ()>>;

/// The last in-flight record of each key, forgotten once it has finished and the map has
/// grown past its bound (a few times the driver's concurrency).
pub(super) struct KeyChains {
    links: HashMap<Vec<u8>, (Link, Arc<AtomicBool>)>,
    bound: usize,
}

/// Ends one record's link: wakes the next record of its key and lets the map forget it.
pub(super) struct Finish(Option<(oneshot::Sender<()>, Arc<AtomicBool>)>);

impl Finish {
    pub(super) fn finished(self) {
        if let Some((wake, done)) = self.0 {
            done.store(true, Ordering::Release);
            let _ = wake.send(());
        }
    }
}

impl KeyChains {
    pub(super) fn new(concurrency: usize) -> Self {
        KeyChains {
            links: HashMap::new(),
            bound: 4 * concurrency.max(1),
        }
    }

    /// Registers a record with `key` (none: no order to keep) as its key's latest. Returns the
    /// previous record's end, to await before handling, and this record's [`Finish`].
    pub(super) fn chain(&mut self, key: Option<&[u8]>) -> (Option<Link>, Finish) {
        let Some(key) = key else {
            return (None, Finish(None));
        };
        let (wake, woken) = oneshot::channel::<()>();
        let link: Link = woken.map(|_| ()).boxed().shared();
        let done = Arc::new(AtomicBool::new(false));
        let previous = self
            .links
            .insert(key.to_vec(), (link, done.clone()))
            .map(|(link, _)| link);
        if self.links.len() > self.bound {
            // A finished record's link may never be polled (no later record of its key), so
            // its end is read from the flag its task sets, not from the shared future.
            self.links
                .retain(|_, (_, done)| !done.load(Ordering::Acquire));
        }
        (previous, Finish(Some((wake, done))))
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.links.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finished_keys_are_forgotten_so_the_map_stays_bounded() {
        // Every record of a payment driver has its own key (an order id): the map must not
        // keep them all (it once did, and each record then scanned the whole map).
        let mut chains = KeyChains::new(2);
        for n in 0..10_000u32 {
            let (previous, finish) = chains.chain(Some(&n.to_be_bytes()));
            assert!(previous.is_none());
            finish.finished();
            assert!(
                chains.len() <= 9,
                "{} links after {n} records",
                chains.len()
            );
        }
    }

    #[test]
    fn unfinished_records_are_kept_whatever_the_bound() {
        let mut chains = KeyChains::new(1);
        let finishes: Vec<Finish> = (0..20u32)
            .map(|n| chains.chain(Some(&n.to_be_bytes())).1)
            .collect();
        assert_eq!(chains.len(), 20);
        for finish in finishes {
            finish.finished();
        }
        chains.chain(Some(b"next"));
        assert_eq!(chains.len(), 1);
    }

    #[test]
    fn a_record_waits_for_the_previous_one_of_its_key_only() {
        let mut chains = KeyChains::new(8);
        let (none, first) = chains.chain(Some(b"a"));
        assert!(none.is_none());
        let (other, _) = chains.chain(Some(b"b"));
        assert!(other.is_none(), "another key does not wait");
        let (previous, _) = chains.chain(Some(b"a"));
        let previous = previous.expect("second record of a key waits for the first");
        assert!(
            previous.clone().now_or_never().is_none(),
            "not before the first ends"
        );
        first.finished();
        assert!(previous.now_or_never().is_some());
        let (unkeyed, _) = chains.chain(None);
        assert!(unkeyed.is_none());
    }
}
