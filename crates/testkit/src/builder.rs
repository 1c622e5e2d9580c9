//! Which topics a kit reads and writes, and their codecs (offline, one fixed id each).

use std::collections::HashMap;
use std::path::Path;

use codec::TopicCodec;
use runtime::{Clock, ConcurrentProcessor, ManualClock, Processor, StatefulProcessor, Stateless};
use topology::{Topology, ValueFormat};

use crate::kit::{OneAtATime, Testkit};
use crate::TestkitError;

/// Where a kit's clock starts unless told otherwise (2026-01-01T00:00:00Z): a plausible
/// wall-clock time, so event timestamps look like real ones.
const DEFAULT_START_MS: i64 = 1_767_225_600_000;

/// The repository's topology.yaml (with its `schemas/`), validated.
pub fn fleet_topology() -> Result<Topology, TestkitError> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../topology.yaml");
    topology::load(&path).map_err(|e| TestkitError::Setup(e.to_string()))
}

type Codecs = HashMap<String, TopicCodec>;
type Formats = HashMap<String, ValueFormat>;

/// The topics a kit handles and the clock's start; [`Builder::stateful`] and its siblings
/// make the processor and the kit.
pub struct Builder<'t> {
    topology: &'t Topology,
    inputs: Vec<String>,
    /// Outputs and dead-letter topics: written, never read.
    written: Vec<String>,
    start_ms: i64,
}

impl<'t> Builder<'t> {
    /// Processor `name` of `topology`: its inputs, their dead-letter topics and its outputs.
    pub fn processor(topology: &'t Topology, name: &str) -> Result<Self, TestkitError> {
        let (spec, _) = topology
            .processor(name)
            .ok_or_else(|| TestkitError::Setup(format!("no processor `{name}` in the topology")))?;
        let inputs: Vec<String> = spec.input_topics().map(String::from).collect();
        let mut written: Vec<String> = spec.output_topics().map(String::from).collect();
        written.extend(spec.inputs.values().map(|i| i.dead_letter.clone()));
        Self::new(topology, inputs, written)
    }

    /// A processor that is not in the topology (yet): it reads `inputs` and writes `outputs`,
    /// topics of `topology`.
    pub fn topics(
        topology: &'t Topology,
        inputs: &[&str],
        outputs: &[&str],
    ) -> Result<Self, TestkitError> {
        let own = |names: &[&str]| names.iter().map(|n| n.to_string()).collect();
        Self::new(topology, own(inputs), own(outputs))
    }

    fn new(
        topology: &'t Topology,
        inputs: Vec<String>,
        written: Vec<String>,
    ) -> Result<Self, TestkitError> {
        if let Some(missing) = inputs
            .iter()
            .chain(&written)
            .find(|t| topology.topic(t).is_none())
        {
            return Err(TestkitError::Setup(format!(
                "topic `{missing}` is not in the topology"
            )));
        }
        Ok(Self {
            topology,
            inputs,
            written,
            start_ms: DEFAULT_START_MS,
        })
    }

    /// Where the kit's clock stands before the first record.
    pub fn starting_at(mut self, ms: i64) -> Self {
        self.start_ms = ms;
        self
    }

    /// A kit for a [`StatefulProcessor`]; `make` gets the kit's (paused) clock.
    pub fn stateful<P: StatefulProcessor>(
        self,
        make: impl FnOnce(Clock) -> P,
    ) -> Result<Testkit<P>, TestkitError> {
        let clock = ManualClock::starting_at(self.start_ms);
        let processor = make(clock.clock());
        let (codecs, formats) = self.codecs()?;
        Ok(Testkit::new(processor, clock, codecs, formats, self.inputs))
    }

    /// A kit for a stateless [`Processor`] (run as the runtime runs it: [`Stateless`]).
    pub fn stateless<P: Processor>(
        self,
        make: impl FnOnce(Clock) -> P,
    ) -> Result<Testkit<Stateless<P>>, TestkitError> {
        self.stateful(|clock| Stateless(make(clock)))
    }

    /// A kit for a [`ConcurrentProcessor`], handled one record at a time.
    pub fn concurrent<P: ConcurrentProcessor>(
        self,
        make: impl FnOnce(Clock) -> P,
    ) -> Result<Testkit<OneAtATime<P>>, TestkitError> {
        self.stateful(|clock| OneAtATime(make(clock)))
    }

    /// An offline codec per Avro topic (ids 1, 2, … in the order the topics are named) and
    /// every topic's value format.
    fn codecs(&self) -> Result<(Codecs, Formats), TestkitError> {
        let mut codecs = HashMap::new();
        let mut formats = HashMap::new();
        for name in self.inputs.iter().chain(&self.written) {
            if formats.contains_key(name) {
                continue;
            }
            let Some(spec) = self.topology.topic(name) else {
                continue;
            };
            formats.insert(name.clone(), spec.value);
            let Some(path) = spec.value_schema.as_deref() else {
                continue;
            };
            let text = self.topology.schema_text(path).ok_or_else(|| {
                TestkitError::Setup(format!("schema {} of `{name}` not loaded", path.display()))
            })?;
            let id = u32::try_from(codecs.len() + 1).unwrap_or(u32::MAX);
            let codec = TopicCodec::offline(&format!("{name}-value"), text, id)?;
            codecs.insert(name.clone(), codec);
        }
        Ok((codecs, formats))
    }
}
