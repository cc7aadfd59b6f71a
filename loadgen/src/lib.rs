//! `rill-loadgen`: a load generator for Kafka-compatible brokers (Rill, Kafka, Redpanda),
//! built so that its latency figures can be trusted and it is never the bottleneck.
//!
//! How a run works: the main thread does the setup over blocking sockets ([`admin`]), then
//! starts one glommio executor per core ([`runtime`]); each runs its share of producers and
//! consumers on their own connections ([`driver`]). Producers ([`producer`]) follow an
//! open-loop schedule ([`schedule`]): every record has an intended send time, and latency
//! is measured from it, so a stalled broker shows up in the tail instead of silently
//! slowing the tool down (no coordinated omission). Records carry a send stamp
//! ([`payload`]) that consumers ([`consumer`]) turn into end-to-end latency. Each executor
//! records into its own HdrHistograms ([`stats`]); the main thread merges them per
//! interval for the progress line and at the end for the [`report`]: `summary.json`, `.hgrm`
//! files ([`hgrm`]), an interval log ([`hlog`]) and a self-contained `report.html`
//! ([`html`]). [`compare`] puts runs
//! side by side.
//!
//! State ownership: the [`driver::RunPlan`] is shared read-only by every executor; a
//! [`stats::Recorder`], a [`producer::ProducerCore`] and a [`consumer::ConsumerCore`] belong
//! to one executor and are never shared between threads; the only cross-thread state is
//! per-partition progress counters ([`stats::PartitionCounters`]) and the run's
//! [`driver::Control`] atomics. The producer and consumer logic has no I/O in it, so tests
//! drive it in virtual time.
//!
//! Layout: `run` drives a workload: `admin` sets it up, `driver` runs the executors
//! (`runtime`, `reconnect`, `wire`) with their `producer`s, `consumer`s and `group` members,
//! which use `schedule`, `batch` and `payload`; `stats` records; `report`, `html`, `hgrm`,
//! `hlog`, `compare` and `saturation` turn the records into results; `config` and `error`
//! are shared by all.

pub mod admin;
pub mod batch;
pub mod compare;
pub mod config;
pub mod consumer;
pub mod driver;
pub mod error;
pub mod group;
pub mod hgrm;
pub mod hlog;
pub mod html;
pub mod payload;
pub mod producer;
pub mod reconnect;
pub mod report;
pub mod run;
pub mod runtime;
pub mod saturation;
pub mod schedule;
pub mod stats;
pub mod wire;
