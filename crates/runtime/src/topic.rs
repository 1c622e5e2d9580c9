//! Typed topic handles: a processor's port bound to its topic, carrying the Rust type of the
//! port's values. A processor builds its handles once from its spec, by port name
//! ([`topology::ProcessorKind::ports`]); `fleet validate` has already checked that each port
//! is bound to a topic of the right record, so a lookup that fails here means an unvalidated
//! topology. [`crate::Outputs::send`] takes a handle, so a value of the wrong type for a port
//! does not compile.

use std::fmt;
use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use topology::ProcessorSpec;

use crate::processor::{HandlerError, Input};
use crate::RuntimeError;

/// The topic bound to one port, whose values are `T`.
pub struct Topic<T> {
    name: String,
    _value: PhantomData<fn() -> T>,
}

impl<T> Topic<T> {
    /// A handle on topic `name` (tests and tools that have no spec).
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            _value: PhantomData,
        }
    }

    /// The topic `spec` binds to its output port `port`.
    pub fn output(spec: &ProcessorSpec, port: &str) -> Result<Self, RuntimeError> {
        spec.output(port)
            .map(Self::new)
            .ok_or_else(|| unbound(spec, "output", port))
    }

    /// The topic `spec` binds to its input port `port`.
    pub fn input(spec: &ProcessorSpec, port: &str) -> Result<Self, RuntimeError> {
        spec.input(port)
            .map(Self::new)
            .ok_or_else(|| unbound(spec, "input", port))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// True when `input` was read from this topic.
    pub fn carries(&self, input: &Input) -> bool {
        input.topic == self.name
    }
}

impl<T: DeserializeOwned> Topic<T> {
    /// `input`'s value, if `input` was read from this topic (`None` otherwise): how a handler
    /// with several inputs dispatches.
    pub fn decode(&self, input: &Input) -> Option<Result<T, HandlerError>> {
        self.carries(input).then(|| input.decode())
    }
}

fn unbound(spec: &ProcessorSpec, side: &str, port: &str) -> RuntimeError {
    RuntimeError::Config(format!(
        "`{}` binds no topic to its {side} port `{port}` (run `fleet validate`)",
        spec.name
    ))
}

// Derives would demand `T: Clone`/`T: Debug`; a handle is only a name.
impl<T> Clone for Topic<T> {
    fn clone(&self) -> Self {
        Self::new(self.name.clone())
    }
}

impl<T> fmt::Debug for Topic<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Topic").field(&self.name).finish()
    }
}

impl<T> fmt::Display for Topic<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}
