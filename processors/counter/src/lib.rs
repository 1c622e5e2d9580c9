//! `counter`: a test processor, the testkit's worked example of a processor crate. It counts
//! the increments of each record key over a tumbling window: the first increment of a key
//! opens the key's window and sets its timer `window_ms` later; when the timer fires the
//! window's count and total go out as one [`WindowCount`] (keyed like the input) and the
//! key's state is dropped, so the next increment opens a new window.
//!
//! Stateful, one writer per key (the instance owning the key's partition); the runtime skips
//! a redelivered increment its store already applied, so each counts once. Time comes from
//! the [`Clock`] it is given, so a test moves it instead of waiting.
//!
//! It is not in topology.yaml; its tests (`tests/counter.rs`) drive it with the testkit over
//! the topics of `tests/topology.yaml`.

use runtime::state::{State, Timer};
use runtime::{Clock, HandlerError, Input, Outputs, StatefulProcessor, Topic};
use serde::{Deserialize, Serialize};

/// One input record (`storefleet.counter.Increment`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Increment {
    pub event_id: String,
    pub amount: i64,
}

/// One output record (`storefleet.counter.WindowCount`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowCount {
    pub key: String,
    pub window_start: i64,
    pub window_end: i64,
    pub increments: i64,
    pub total: i64,
}

/// A key's open window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Window {
    pub start: i64,
    pub increments: i64,
    pub total: i64,
}

pub struct Counter {
    /// Where window counts go.
    pub output: Topic<WindowCount>,
    pub window_ms: i64,
    pub clock: Clock,
}

impl StatefulProcessor for Counter {
    type Value = Window;
    const STORE: &'static str = "windows";

    async fn handle(
        &mut self,
        input: &Input,
        state: &mut State<'_, Window>,
        _out: &mut Outputs<'_>,
    ) -> Result<(), HandlerError> {
        let increment: Increment = input.decode()?;
        let key = input
            .key_str()
            .ok_or_else(|| HandlerError::invalid("an increment needs a UTF-8 key"))?;
        let mut window = match state.get(key) {
            Some(open) => open.clone(),
            None => {
                let start = self.clock.now_ms();
                state.set_timer(key, start + self.window_ms, "window");
                Window {
                    start,
                    ..Window::default()
                }
            }
        };
        window.increments += 1;
        window.total = window.total.saturating_add(increment.amount);
        state.put(key, window);
        Ok(())
    }

    async fn on_timer(
        &mut self,
        timer: &Timer,
        state: &mut State<'_, Window>,
        out: &mut Outputs<'_>,
    ) -> Result<(), HandlerError> {
        let Some(window) = state.delete(&timer.key) else {
            return Ok(());
        };
        let count = WindowCount {
            key: timer.key.clone(),
            window_start: window.start,
            window_end: timer.at_ms,
            increments: window.increments,
            total: window.total,
        };
        out.send(&self.output, &timer.key, &count)
    }
}
