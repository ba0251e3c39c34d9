//! Where sources hand their work: [`ChannelOutput`] (the log tailer's
//! `TailOutput`, the repository watcher's `RepoOutput`) and, for a
//! repository's history, an [`Emit`] that queues each chunk in the
//! repository's lane.

use super::lanes::LaneGate;
use super::{Payload, Work, ALIVE_EVERY};
use crate::metrics::Metrics;
use crate::scan::driver::{Emit, Flow};
use crate::scan::Chunk;
use crate::source::log_tail::{Stopped, TailOutput};
use crate::source::repo_watch::RepoOutput;
use crate::store::DaemonWrite;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Hands work from the sources to the pipeline: counts it into its lane,
/// and waits while the pipeline is full, saying every [`ALIVE_EVERY`] that
/// the source is alive (waiting on the engine is not being stuck).
#[derive(Clone)]
pub struct ChannelOutput {
    pub(super) tx: mpsc::Sender<Work>,
    pub(super) gate: Arc<LaneGate>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) runtime: tokio::runtime::Handle,
}

impl ChannelOutput {
    fn work(source: &Arc<str>, lane: &Arc<str>, payload: Payload, then: DaemonWrite) -> Work {
        Work {
            source: source.clone(),
            lane: lane.clone(),
            payload,
            then: Some(then),
            done: None,
        }
    }

    async fn send(&self, mut work: Work) -> Result<(), Stopped> {
        // Counted before it can arrive: the sink stage may finish it before
        // `send` returns.
        self.gate.enter(&work.lane);
        loop {
            match self.tx.send_timeout(work, ALIVE_EVERY).await {
                Ok(()) => return Ok(()),
                Err(mpsc::error::SendTimeoutError::Timeout(w)) => {
                    self.metrics.beat(&w.source);
                    work = w;
                }
                Err(mpsc::error::SendTimeoutError::Closed(_)) => return Err(Stopped),
            }
        }
    }
}

impl TailOutput for ChannelOutput {
    fn emit(
        &mut self,
        source: &Arc<str>,
        lane: &Arc<str>,
        chunk: Option<Chunk>,
        then: DaemonWrite,
    ) -> Result<(), Stopped> {
        let payload = chunk.map_or(Payload::Nothing, Payload::Chunk);
        let work = Self::work(source, lane, payload, then);
        self.runtime.clone().block_on(self.send(work))
    }

    fn has_room(&self, lane: &str) -> bool {
        self.gate.has_room(lane)
    }
}

impl RepoOutput for ChannelOutput {
    fn lane(&self, source: &Arc<str>) -> Box<dyn Emit + Send> {
        Box::new(LaneEmit {
            out: self.clone(),
            source: source.clone(),
        })
    }

    async fn progress(&self, source: &Arc<str>, then: DaemonWrite) -> Result<(), Stopped> {
        let work = Self::work(source, source, Payload::Nothing, then);
        self.send(work).await
    }
}

/// The daemon's [`Emit`] for a repository's history: each chunk queued in
/// order in the repository's lane, for the scan stage to scan (not inline).
/// Called on a blocking thread; waits while the pipeline is full.
struct LaneEmit {
    out: ChannelOutput,
    source: Arc<str>,
}

impl Emit for LaneEmit {
    fn chunk(&self, _seq: u64, chunk: &Chunk) -> Flow {
        // Copied: the source may reuse its buffer once this returns.
        let work = Work {
            source: self.source.clone(),
            lane: self.source.clone(),
            payload: Payload::Chunk(chunk.clone()),
            then: None,
            done: None,
        };
        match self.out.runtime.block_on(self.out.send(work)) {
            Ok(()) => Flow::Continue,
            Err(Stopped) => Flow::Stop,
        }
    }

    fn scans_inline(&self) -> bool {
        false
    }
}
