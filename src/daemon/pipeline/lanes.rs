//! The sink stage: scanned work, queued per lane (one log file, one
//! repository), handed to the engine round-robin between lanes.
//!
//! Without lanes a flood in one file (1,500 made-up keys, each verified at
//! the provider's rate limit) went to the engine as one batch, and the real
//! key in the next file waited for all of it. Now each lane hands the engine
//! at most [`SLICE`] findings at a time and at most [`MAX_BUSY`] lanes are at
//! the engine at once, so a key from a quiet lane waits for at most one
//! slice of every busy lane, whatever their backlog.
//!
//! Within a lane, order is kept: work is finished (its [`DaemonWrite`]
//! persisted) in the order it was read, and only after its findings were
//! taken. A [`LaneGate`] bounds the work queued per lane, so the tailer turns
//! to other files while one file's lane is full.

use super::{log_finding, submit, FindingSink, Scanned, Shared};
use crate::scan::Finding;
use crate::store::DaemonWrite;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

/// Findings one lane hands the engine in one submission.
pub const SLICE: usize = 16;
/// Lanes at the engine at once.
const MAX_BUSY: usize = 4;
/// Work items queued per lane before its source is asked to wait.
pub const LANE_CAP: usize = 4;
/// Work items queued across all lanes before the scan stage waits.
const MAX_QUEUED: usize = 64;

/// Work queued per lane, shared with the sources' output so a source can
/// leave a full lane alone and read another.
#[derive(Debug, Default)]
pub struct LaneGate {
    queued: Mutex<HashMap<Arc<str>, usize>>,
}

impl LaneGate {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, usize>> {
        self.queued.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `lane` can take another work item without blocking.
    pub fn has_room(&self, lane: &str) -> bool {
        self.lock().get(lane).map_or(true, |n| *n < LANE_CAP)
    }

    pub(super) fn enter(&self, lane: &Arc<str>) {
        *self.lock().entry(lane.clone()).or_default() += 1;
    }

    fn leave(&self, lane: &Arc<str>) {
        let mut q = self.lock();
        if let Some(n) = q.get_mut(lane) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                q.remove(lane);
            }
        }
    }
}

struct Item {
    seq: u64,
    /// Findings not yet taken by the engine, in order.
    findings: VecDeque<Finding>,
    then: Option<DaemonWrite>,
}

#[derive(Default)]
struct Lane {
    queue: VecDeque<Item>,
    /// A slice of its head item is at the engine.
    busy: bool,
}

/// What a finished submission reports.
struct Submitted {
    lane: Arc<str>,
    /// `false`: asked to stop before the engine took the slice.
    taken: bool,
}

struct Scheduler<S: FindingSink + 'static> {
    shared: Arc<Shared<S>>,
    gate: Arc<LaneGate>,
    lanes: HashMap<Arc<str>, Lane>,
    /// Lanes with work and no slice at the engine, in turn order.
    turn: VecDeque<Arc<str>>,
    busy: JoinSet<Submitted>,
    queued: usize,
    next_seq: u64,
    /// Items not finished yet, by arrival; a flush waits for those before it.
    outstanding: BTreeSet<u64>,
    barriers: Vec<(u64, oneshot::Sender<()>)>,
    /// Writes of finished items, persisted together.
    writes: Vec<DaemonWrite>,
}

pub(super) async fn sink_stage<S: FindingSink + 'static>(
    shared: Arc<Shared<S>>,
    gate: Arc<LaneGate>,
    mut rx: mpsc::Receiver<Vec<Scanned>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut s = Scheduler {
        shared,
        gate,
        lanes: HashMap::new(),
        turn: VecDeque::new(),
        busy: JoinSet::new(),
        queued: 0,
        next_seq: 0,
        outstanding: BTreeSet::new(),
        barriers: Vec::new(),
        writes: Vec::new(),
    };
    let mut open = true;
    loop {
        if s.busy.is_empty() && (!open || s.queued >= MAX_QUEUED) {
            // Nothing at the engine: give every lane a turn (this also ends
            // the stage once the sources are gone and all is handled).
            s.turn = s.lanes.keys().cloned().collect();
            s.dispatch(&stop);
            s.persist().await;
            if !open && s.busy.is_empty() {
                break;
            }
        }
        let room = open && s.queued < MAX_QUEUED;
        tokio::select! {
            biased;
            _ = super::super::stopped(&mut stop) => break,
            Some(done) = s.busy.join_next(), if !s.busy.is_empty() => {
                match done {
                    Ok(Submitted { lane, taken: true }) => s.slice_taken(&lane),
                    // Asked to stop: what was not taken is read again.
                    Ok(Submitted { taken: false, .. }) => break,
                    Err(e) => {
                        tracing::error!("a submission to the engine failed: {e}; its data will be read again after a restart");
                        break;
                    }
                }
            }
            batch = rx.recv(), if room => match batch {
                Some(batch) => s.arrive(batch),
                None => open = false,
            },
        }
        s.dispatch(&stop);
        s.persist().await;
    }
    // Let what the engine is working on end (the daemon bounds the wait),
    // and persist what it took.
    while let Some(done) = s.busy.join_next().await {
        if let Ok(Submitted { lane, taken: true }) = done {
            s.slice_taken(&lane);
        }
    }
    s.finish_ready_heads();
    s.persist().await;
}

impl<S: FindingSink + 'static> Scheduler<S> {
    fn arrive(&mut self, batch: Vec<Scanned>) {
        for item in batch {
            let seq = self.next_seq;
            self.next_seq += 1;
            for f in &item.findings {
                log_finding(f);
                self.shared.metrics.finding(&f.provider);
            }
            if item.bytes > 0 {
                self.shared
                    .metrics
                    .scanned(&item.source, item.bytes, item.lines);
            }
            if let Some(done) = item.done {
                self.barriers.push((seq, done));
            }
            self.outstanding.insert(seq);
            self.queued += 1;
            let lane = self.lanes.entry(item.lane.clone()).or_default();
            lane.queue.push_back(Item {
                seq,
                findings: item.findings.into(),
                then: item.then,
            });
            if !lane.busy && lane.queue.len() == 1 {
                self.turn.push_back(item.lane);
            }
        }
    }

    /// The head item of `lane` had a slice taken: if that was its last,
    /// it is finished.
    fn slice_taken(&mut self, lane: &Arc<str>) {
        if let Some(l) = self.lanes.get_mut(lane) {
            l.busy = false;
            if !l.queue.is_empty() {
                self.turn.push_back(lane.clone());
            }
        }
    }

    /// Finishes head items with nothing left for the engine, in every lane.
    fn finish_ready_heads(&mut self) {
        let names: Vec<Arc<str>> = self.lanes.keys().cloned().collect();
        for name in names {
            self.finish_ready(&name);
        }
    }

    fn finish_ready(&mut self, name: &Arc<str>) {
        let Some(lane) = self.lanes.get_mut(name) else {
            return;
        };
        if lane.busy {
            return;
        }
        while lane.queue.front().is_some_and(|i| i.findings.is_empty()) {
            if let Some(item) = lane.queue.pop_front() {
                self.writes.extend(item.then);
                self.outstanding.remove(&item.seq);
                self.queued -= 1;
                self.gate.leave(name);
            }
        }
        if lane.queue.is_empty() {
            self.lanes.remove(name);
        }
    }

    /// Hands the next slice of each lane in turn to the engine, while fewer
    /// than [`MAX_BUSY`] lanes are there.
    fn dispatch(&mut self, stop: &watch::Receiver<bool>) {
        let mut later = VecDeque::new();
        while let Some(name) = self.turn.pop_front() {
            self.finish_ready(&name);
            let Some(lane) = self.lanes.get_mut(&name) else {
                continue;
            };
            // A busy lane takes its turn again once its slice is taken.
            if lane.busy {
                continue;
            }
            if self.busy.len() >= MAX_BUSY {
                later.push_back(name);
                continue;
            }
            let Some(head) = lane.queue.front_mut() else {
                continue;
            };
            let n = head.findings.len().min(SLICE);
            let slice: Vec<Finding> = head.findings.drain(..n).collect();
            lane.busy = true;
            let (shared, mut stop) = (self.shared.clone(), stop.clone());
            self.busy.spawn(async move {
                let taken = submit(&shared, slice, &mut stop).await;
                Submitted { lane: name, taken }
            });
        }
        self.turn = later;
    }

    async fn persist(&mut self) {
        if !self.writes.is_empty() {
            let writes = std::mem::take(&mut self.writes);
            let store = self.shared.store.clone();
            let persisted =
                tokio::task::spawn_blocking(move || store.apply_daemon_writes(&writes)).await;
            match persisted {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!("cannot persist log offsets / repository cursors: {e}; what was read since the last success will be read again after a restart"),
                Err(e) => tracing::error!("persisting offsets failed: {e}"),
            }
        }
        let first_open = self.outstanding.first().copied();
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.barriers)
            .into_iter()
            .partition(|(seq, _)| first_open.map_or(true, |f| f > *seq));
        self.barriers = waiting;
        for (_, ack) in ready {
            let _ = ack.send(());
        }
    }
}
