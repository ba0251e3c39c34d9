//! The remediation engine: findings in, incidents out.
//!
//! [`Engine::process`] records each finding as an incident (one per key
//! fingerprint) and runs its provider's playbook under the configured
//! policy. The engine names no provider: it asks the [`registry::Registry`]
//! for the incident's [`playbook::Playbook`] (a provider's own, or the
//! template playbook that runs the rule's `verify`/`revoke`). Every provider
//! call goes through one loop ([`ctx`]) that journals it before it is made,
//! retries with backoff, and resolves calls a crash left open. Incidents move
//! only through the state machine of [`crate::store::State`]. Incidents that fail are
//! alerted and picked up again by the next run or [`Engine::retry_pending`];
//! incidents waiting for their owner are polled less and less often and the
//! owner reminded on a schedule ([`schedule`]); resolved ones are left alone.
//!
//! The engine never stores a key. Keys seen by this process are kept in
//! memory, so a later pass (a retry, a poll for a manual rotation) can use
//! them; a playbook may also read them back from where it put them (a
//! consumer's env file).

mod admin_keys;
mod aws;
pub mod consumer;
pub mod consumer_check;
mod ctx;
mod error;
pub mod escrow;
mod finish;
mod handover;
pub mod http_action;
mod lease;
mod new_key;
mod notify;
mod outcome;
mod playbook;
pub mod policy;
pub mod propagate;
mod registry;
pub mod retry;
mod revoke;
mod revoke_steps;
mod schedule;
mod tatum;
mod template_call;
mod template_rotate;
pub mod urls;

use crate::alert::digest::{Digests, DEFAULT_INTERVAL};
use crate::alert::{Alerter, OwnerResolver};
use crate::config::{Config, RemediationMode};
use crate::metrics::ComponentHealth;
use crate::rules::RuleSet;
use crate::scan::{Finding, Secret};
use crate::store::{IncidentRow, LocationRow, NewIncident, State, Store};
use ctx::Ctx;
pub use error::{RemediateError, StepError};
pub use lease::{lease_of, process_alive};
pub use outcome::IncidentOutcome;
pub(crate) use registry::Registry;

/// What `incidents show` prints of the data the incident's playbook keeps
/// (network, bound resources, the new key's redacted form), as (label,
/// value) lines.
pub fn incident_details(row: &IncidentRow) -> Vec<(&'static str, String)> {
    Registry::details(row)
}
/// `keysentry incidents expire ID [--force]`: asks for the incident's key
/// to be expired on the next pass (see `tatum::expire`).
pub fn request_expire(store: &Store, id: i64, force: bool) -> Result<String, RemediateError> {
    tatum::expire::request(store, id, force)
}

use http_action::HttpClient;
use lease::ActiveGuard;
use playbook::{HandOverError, Playbook};
use retry::RetryPolicy;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The engine. `Send + Sync`; share it behind an `Arc`.
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    rules: RuleSet,
    /// Shared with the daemon's sources and webhook: one handle per process.
    store: Arc<Store>,
    http: HttpClient,
    /// The playbook of each provider.
    registry: Registry,
    alerter: Arc<Alerter>,
    /// Not-live incidents waiting for their owner's digest.
    digests: Arc<Digests>,
    /// Incidents whose last pass failed, with why: remediation is degraded
    /// while any is here. Shared with the engine a reload replaces this one
    /// with.
    failing: Arc<Mutex<BTreeMap<i64, String>>>,
    /// Compiled once: every finding asks it for an owner.
    owners: OwnerResolver,
    retry: RetryPolicy,
    restart_timeout: Duration,
    /// How often `retry_pending` first looks at a waiting incident (a manual
    /// rotation, a revoke not yet effective); see [`schedule`].
    poll_interval: Duration,
    /// How often the owner of a waiting incident is reminded.
    reminder_interval: Duration,
    /// Passes working towards containment (verify, freeze, revoke) at once.
    contain_slots: Arc<Semaphore>,
    /// Passes past containment (inventory, rotation, hand-over) at once.
    rotate_slots: Arc<Semaphore>,
    /// Keys seen by this process, by incident id, for incidents a later pass
    /// still has to call a provider for (the store must never hold a key).
    /// A key leaves once its incident needs no more calls under the policy
    /// (see [`Inner::release_secret`]), so this holds the keys of unfinished
    /// work only, not of every incident ever seen.
    /// Shared with the engine a reload replaces this one with.
    secrets: Arc<Mutex<HashMap<i64, Secret>>>,
    /// `remediation.escrow`: `None` when not configured, the reason when it
    /// is but cannot be used (then nothing is rotated: a new key would have
    /// nowhere safe to go first).
    escrow: Option<Result<escrow::Escrow, String>>,
    /// Incidents a task of this process is working on right now (shared
    /// likewise).
    active: Arc<Mutex<HashSet<i64>>>,
}

impl Engine {
    /// Opens the store under the config's state directory, with the built-in
    /// rules plus `scan.rules`.
    pub fn open(config: &Config) -> Result<Engine, RemediateError> {
        let rules = RuleSet::load(&config.scan.rules)?;
        Engine::open_with_rules(config, rules)
    }

    /// As [`Engine::open`], with the rule set the findings came from (their
    /// `verify`/`revoke` templates drive the simple providers).
    pub fn open_with_rules(config: &Config, rules: RuleSet) -> Result<Engine, RemediateError> {
        let store = Store::from_config(config)?;
        Engine::with_store(config, rules, Arc::new(store))
    }

    /// As [`Engine::open_with_rules`], on a store the caller opened (the
    /// daemon shares one with its sources and webhook).
    pub fn with_store(
        config: &Config,
        rules: RuleSet,
        store: Arc<Store>,
    ) -> Result<Engine, RemediateError> {
        let registry = Registry::builtin(config, &rules);
        Engine::with_registry(config, rules, store, registry)
    }

    /// As [`Engine::with_store`], with the playbooks of `registry`.
    pub(crate) fn with_registry(
        config: &Config,
        rules: RuleSet,
        store: Arc<Store>,
        registry: Registry,
    ) -> Result<Engine, RemediateError> {
        let insecure = urls::problems(config);
        if !insecure.is_empty() {
            return Err(RemediateError::InsecureHttp(insecure));
        }
        let r = &config.remediation;
        let mut retry = RetryPolicy::default();
        if let Some(n) = r.max_attempts {
            retry.max_attempts = n.max(1);
        }
        if let Some(ms) = r.backoff_ms {
            retry.base = Duration::from_millis(ms);
        }
        let timeout = Duration::from_secs(r.timeout_secs.unwrap_or(15).max(1));
        let own_rates = config.providers.rate_limits();
        let http = HttpClient::new(
            timeout,
            Some(r.rate_limit.unwrap_or(DEFAULT_RATE)),
            &own_rates,
            config.allow_insecure_http,
        )
        .map_err(|e| RemediateError::Http(e.to_string()))?;
        let alerter =
            Alerter::from_config(config).map_err(|e| RemediateError::Alerts(e.to_string()))?;
        let digest_every = config
            .alert_digest
            .as_ref()
            .and_then(|d| d.interval_secs)
            .map_or(DEFAULT_INTERVAL, |s| Duration::from_secs(s.max(1)));
        let owners =
            OwnerResolver::new(config).map_err(|e| RemediateError::Alerts(e.to_string()))?;
        let concurrency = r.concurrency.unwrap_or(16).max(1);
        let poll_interval = registry.poll_interval;
        Ok(Engine {
            inner: Arc::new(Inner {
                config: config.clone(),
                rules,
                store,
                http,
                registry,
                alerter: Arc::new(alerter),
                digests: Arc::new(Digests::new(digest_every)),
                failing: Arc::default(),
                owners,
                retry,
                restart_timeout: Duration::from_secs(120),
                poll_interval,
                reminder_interval: Duration::from_secs(
                    r.reminder_interval_secs
                        .unwrap_or(schedule::DEFAULT_REMINDER_SECS)
                        .max(1),
                ),
                contain_slots: Arc::new(Semaphore::new(concurrency)),
                rotate_slots: Arc::new(Semaphore::new(concurrency)),
                secrets: Arc::default(),
                escrow: escrow::Escrow::load(config)
                    .transpose()
                    .map(|r| r.map_err(|e| e.to_string())),
                active: Arc::default(),
            }),
        })
    }

    /// The engine for a reloaded config: new settings, but this process's
    /// memory carries over — the keys that unfinished incidents still need
    /// and the incidents being worked on — so a reload loses no key and
    /// never runs an incident twice at once. The store stays this engine's
    /// (a reload does not move the state directory).
    pub fn reopen(&self, config: &Config, rules: RuleSet) -> Result<Engine, RemediateError> {
        let mut engine = Engine::with_store(config, rules, self.inner.store.clone())?;
        if let Some(inner) = Arc::get_mut(&mut engine.inner) {
            inner.secrets = self.inner.secrets.clone();
            inner.active = self.inner.active.clone();
            inner.failing = self.inner.failing.clone();
        }
        Ok(engine)
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// How many leaked keys this process holds in memory: one per incident
    /// that still needs a provider call with it (`/metrics` shows it as
    /// `keysentry_remediation_keys_held`). Settled incidents hold none.
    pub fn keys_held(&self) -> usize {
        lock(&self.inner.secrets).len()
    }

    /// `remediation` (failed while an incident's last pass failed) and
    /// `alerts` (failed while every channel's last delivery failed), for
    /// `/healthz` and `/readyz`.
    pub fn components(&self) -> Vec<(String, ComponentHealth)> {
        let failing = lock(&self.inner.failing);
        let remediation = match failing.iter().next_back() {
            None => ComponentHealth::ok(),
            Some((id, why)) => ComponentHealth::failed(format!(
                "{} incident(s) failing; the latest, incident {id}: {why}",
                failing.len()
            )),
        };
        let mut out = vec![("remediation".to_string(), remediation)];
        if let Some(alerts) = self.inner.alerter.health() {
            out.push(("alerts".to_string(), alerts));
        }
        out
    }

    /// Sends every digest waiting for its window to end (at shutdown, so no
    /// not-live incident goes untold).
    pub async fn flush_digests(&self) {
        for (alert, _) in self.inner.digests.take_all() {
            self.inner.alerter.send(&alert).await;
        }
    }

    /// Records the findings (one incident per key, every location) and
    /// remediates each incident per the policy. Incidents already closed or
    /// settled make no provider call. Outcomes come in the order of the
    /// findings' first appearance.
    pub async fn process(
        &self,
        findings: Vec<Finding>,
    ) -> Result<Vec<IncidentOutcome>, RemediateError> {
        let items: Vec<NewIncident> = findings
            .iter()
            .map(|f| new_incident(&self.inner.owners, f))
            .collect();
        let ids = self.inner.store.record_findings(&items)?;
        let mut order: Vec<(i64, bool)> = Vec::new();
        let mut index: HashMap<i64, usize> = HashMap::new();
        {
            let mut secrets = lock(&self.inner.secrets);
            for (finding, &(id, created)) in findings.iter().zip(&ids) {
                match index.get(&id) {
                    Some(&i) => order[i].1 |= created,
                    None => {
                        index.insert(id, order.len());
                        order.push((id, created));
                    }
                }
                secrets.entry(id).or_insert_with(|| finding.secret.clone());
            }
        }
        Ok(self.run_all(order).await)
    }

    /// Takes up every open incident whose key this process can reach: retries
    /// failed ones once their backoff has passed, polls waiting ones (manual
    /// rotations) after the registry's poll interval (default 60 s),
    /// doubling while they keep waiting ([`schedule`]), and reminds their
    /// owner once per `remediation.reminder_interval_secs`; finishes
    /// interrupted ones. Resolved incidents are never taken up. The daemon calls it periodically; errors
    /// are logged, not returned. Open incidents are read a page at a time,
    /// so a store with many contained-and-done incidents costs a scan, not
    /// memory.
    pub async fn retry_pending(&self) -> Vec<IncidentOutcome> {
        self.take_up_open(false).await
    }

    /// As [`Engine::retry_pending`], without waiting out any backoff: after
    /// a reload, whatever made incidents fail may be fixed.
    pub async fn retry_pending_now(&self) -> Vec<IncidentOutcome> {
        self.take_up_open(true).await
    }

    async fn take_up_open(&self, ignore_backoff: bool) -> Vec<IncidentOutcome> {
        if self.inner.config.remediation.mode != RemediationMode::Auto {
            return Vec::new();
        }
        let mut outcomes = Vec::new();
        let mut after = 0;
        // Incidents the store says failed: a pass that failed only because
        // the store was away (its row never written), or an incident
        // another daemon of the fleet finished, stops counting as failing.
        let mut failed_in_store = std::collections::BTreeSet::new();
        let mut swept = false;
        loop {
            let rows = match self.inner.store.open_incidents_after(after, RETRY_PAGE) {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::error!(error = %e, "cannot list open incidents");
                    break;
                }
            };
            failed_in_store.extend(
                rows.iter()
                    .filter(|r| r.state == State::Failed)
                    .map(|r| r.id),
            );
            if rows.len() < RETRY_PAGE {
                swept = true;
            }
            let Some(last) = rows.last() else { break };
            after = last.id;
            let more = rows.len() == RETRY_PAGE;
            let now = now_ms();
            let mut work = Vec::new();
            for row in rows {
                if self.inner.settled(&row) {
                    // Also sweeps a key a racing pass left behind.
                    self.inner.release_secret(&row);
                } else if ignore_backoff || row.retry_at_ms.map_or(true, |t| now >= t) {
                    if ignore_backoff && row.retry_at_ms.is_some() {
                        if let Err(e) = self.inner.store.end_backoff(row.id) {
                            tracing::error!(incident = row.id, error = %e, "cannot end the backoff");
                        }
                    }
                    work.push((row.id, false));
                }
            }
            outcomes.extend(self.run_all(work).await);
            if !more {
                break;
            }
        }
        if swept {
            let active = lock(&self.inner.active).clone();
            lock(&self.inner.failing)
                .retain(|id, _| failed_in_store.contains(id) || active.contains(id));
        }
        self.drop_keys_of_closed();
        outcomes
    }

    /// Drops the keys of incidents that left the open set from outside this
    /// process (`keysentry incidents resolve`): the page loop above never
    /// sees them again. Held keys are few (unfinished work only).
    fn drop_keys_of_closed(&self) {
        let held: Vec<i64> = lock(&self.inner.secrets).keys().copied().collect();
        for id in held {
            match self.inner.store.incident(id) {
                Ok(Some(row)) => self.inner.release_secret(&row),
                Ok(None) => {}
                Err(e) => tracing::error!(incident = id, error = %e, "cannot load incident"),
            }
        }
    }

    /// Finishes an incident with a new key its owner made by hand: the
    /// incident's playbook checks the key and takes it from there (e.g.
    /// writes it to every consumer holding the leaked key, restarts them,
    /// confirms and closes the incident).
    pub async fn hand_over_key(
        &self,
        incident: i64,
        new_key: Secret,
    ) -> Result<IncidentOutcome, RemediateError> {
        let inner = &self.inner;
        // Lease first, then read: this pass writes the whole row back, so it
        // must not predate a pass that ended in between.
        let guard = ActiveGuard::claim(inner, incident);
        let row = inner
            .store
            .incident(incident)?
            .ok_or(RemediateError::NoIncident(incident))?;
        let playbook = inner.registry.get(&row.provider);
        if !playbook.capabilities().hand_over {
            return Err(RemediateError::NoHandOver {
                id: incident,
                provider: row.provider,
            });
        }
        if row.state.is_final() {
            return Err(RemediateError::Finished {
                id: incident,
                state: row.state,
            });
        }
        match playbook.accept_new_key(&row, &new_key) {
            Ok(()) => {}
            Err(HandOverError::Refused(why)) => return Err(RemediateError::NewKey(why)),
            Err(HandOverError::Unsupported) => {
                return Err(RemediateError::NoHandOver {
                    id: incident,
                    provider: row.provider,
                })
            }
            Err(HandOverError::Step(e)) => {
                return Err(RemediateError::Step {
                    id: incident,
                    source: e,
                })
            }
        }
        let _guard = guard.ok_or(RemediateError::Busy(incident))?;
        let secret = inner.secret_for(&row, playbook);
        let action = inner.action(&row, playbook);
        let mut ctx = Ctx::new(inner, row, action, secret, false);
        inner.store.close_interrupted(incident)?;
        match playbook.hand_over(&mut ctx, new_key).await {
            Err(HandOverError::Refused(why)) => Err(RemediateError::NewKey(why)),
            Err(HandOverError::Unsupported) => Err(RemediateError::NoHandOver {
                id: incident,
                provider: ctx.row().provider.clone(),
            }),
            Err(HandOverError::Step(e)) => {
                ctx.fail(&e);
                inner.finish(ctx.done(), playbook, Vec::new()).await;
                Err(RemediateError::Step {
                    id: incident,
                    source: e,
                })
            }
            Ok(()) => Ok(inner.finish(ctx.done(), playbook, Vec::new()).await),
        }
    }

    async fn run_all(&self, work: Vec<(i64, bool)>) -> Vec<IncidentOutcome> {
        let mut tasks = tokio::task::JoinSet::new();
        for (i, (id, created)) in work.into_iter().enumerate() {
            let inner = self.inner.clone();
            tasks.spawn(async move {
                let slot = inner.contain_slots.clone().acquire_owned().await.ok();
                (i, inner.run_incident(id, created, slot).await)
            });
        }
        let mut done = Vec::with_capacity(tasks.len());
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((i, Some(outcome))) => done.push((i, outcome)),
                Ok((_, None)) => {}
                Err(e) => tracing::error!(error = %e, "an incident task panicked"),
            }
        }
        done.sort_by_key(|(i, _)| *i);
        done.into_iter().map(|(_, o)| o).collect()
    }
}

/// Provider calls per second when the config sets no `rate_limit`.
const DEFAULT_RATE: f64 = 50.0;

/// Why a failed incident waits after a restart: keys live only in memory.
const NO_KEY_REASON: &str = "this keysentry process holds no copy of the key (keys are never \
stored; it was found before a restart or by another keysentry run): remediation resumes when a \
scan or a watched source sees the key again (e.g. `keysentry scan PATH --remediate` where it \
leaked; `keysentry incidents show ID` lists where), or contain it by hand";

/// How long a pass holding a fresh key waits for another pass of this
/// process on the same incident.
const LOCAL_PASS_WAIT: Duration = Duration::from_secs(10);

/// Open incidents `retry_pending` reads from the store at once.
const RETRY_PAGE: usize = 256;

impl Inner {
    /// One pass over an incident. `None` when it could not even be loaded
    /// (logged).
    async fn run_incident(
        &self,
        id: i64,
        created: bool,
        slot: Option<OwnedSemaphorePermit>,
    ) -> Option<IncidentOutcome> {
        // Lease first, then read: the row this pass writes back must not
        // predate a pass that ended in between. With the key in hand, wait
        // for another pass of this process: it may have started without
        // the key (a retry just after a restart) and would stop for want of it.
        let guard = if lock(&self.secrets).contains_key(&id) {
            ActiveGuard::claim_after_local(self, id, LOCAL_PASS_WAIT).await
        } else {
            ActiveGuard::claim(self, id)
        };
        let row = match self.store.incident(id) {
            Ok(Some(row)) => row,
            Ok(None) => return None,
            Err(e) => {
                tracing::error!(incident = id, error = %e, "cannot load incident");
                return None;
            }
        };
        let Some(_guard) = guard else {
            // Another task of this process has it; its pass reports.
            return Some(IncidentOutcome::of(&row, created));
        };
        let mode = self.config.remediation.mode;
        let backing_off =
            row.state == State::Failed && row.retry_at_ms.is_some_and(|t| now_ms() < t);
        if !created && (self.settled(&row) || mode == RemediationMode::Off || backing_off) {
            self.release_secret(&row);
            return Some(IncidentOutcome::of(&row, created));
        }
        let playbook = self.registry.get(&row.provider);
        let secret = self.secret_for(&row, playbook);
        let action = self.action(&row, playbook);
        let mut ctx = Ctx::new(self, row, action, secret, created).with_slot(slot);
        let mut plan = Vec::new();
        match mode {
            RemediationMode::DryRun => plan = playbook.plan(&ctx),
            RemediationMode::Off => {}
            RemediationMode::Auto => {
                let result = match self.store.close_interrupted(id) {
                    Err(e) => Err(e.into()),
                    Ok(_) => playbook.run(&mut ctx).await,
                };
                if let Err(e) = result {
                    ctx.fail(&e);
                } else if ctx.secret().is_none() && ctx.row().state == State::Failed {
                    // A failed incident's findings were taken (its log
                    // offsets saved), so nothing will hand this process the
                    // key again by itself: say so, once (an alert follows).
                    ctx.set_reason(NO_KEY_REASON);
                }
            }
        }
        Some(self.finish(ctx.done(), playbook, plan).await)
    }

    /// The action the policy gives the incident.
    fn action(&self, row: &IncidentRow, playbook: &dyn Playbook) -> crate::config::Action {
        policy::action_for(
            &self.config.remediation,
            &row.provider,
            &row.rule_id,
            playbook.default_action(),
        )
    }

    /// True when the incident needs no more work under the current policy.
    fn settled(&self, row: &IncidentRow) -> bool {
        if row.state.is_final() {
            return true;
        }
        let playbook = self.registry.get(&row.provider);
        playbook.settled(row, self.action(row, playbook))
    }

    /// The incident's key, if this process has seen it or its playbook can
    /// read it back.
    fn secret_for(&self, row: &IncidentRow, playbook: &dyn Playbook) -> Option<Secret> {
        if let Some(s) = lock(&self.secrets).get(&row.id) {
            return Some(s.clone());
        }
        playbook.recover_key(&row.fingerprint)
    }

    /// Keeps `failing` in step with the incident's state after a pass.
    fn note_health(&self, row: &IncidentRow) {
        let mut failing = lock(&self.failing);
        if row.state == State::Failed {
            let why = row.reason.clone().unwrap_or_else(|| "failed".into());
            failing.insert(row.id, why);
        } else {
            failing.remove(&row.id);
        }
    }

    /// Drops the in-memory key of an incident that needs no more provider
    /// calls: closed, not live, settled under the policy (a key frozen
    /// under `freeze`, a key verified under `notify`), or any incident when
    /// remediation is not `auto`. If the policy later asks for more, the key
    /// comes back the way it does after a restart: from where the playbook
    /// put it, or when a source sees it again.
    fn release_secret(&self, row: &IncidentRow) {
        if self.config.remediation.mode != RemediationMode::Auto || self.settled(row) {
            lock(&self.secrets).remove(&row.id);
        }
    }
}

fn new_incident(owners: &OwnerResolver, f: &Finding) -> NewIncident {
    let o = &f.origin;
    NewIncident {
        fingerprint: f.fingerprint.clone(),
        provider: f.provider.to_string(),
        rule_id: f.rule_id.to_string(),
        rule_name: f.rule_name.to_string(),
        redacted: f.secret.redacted(),
        owner: owners.resolve(f),
        location: LocationRow {
            source: o.kind().to_string(),
            path: o.path(),
            line: f.line,
            column: f.column,
            commit: o.commit().map(str::to_string),
            repo: o.repo().map(str::to_string),
            author_email: o.author_email().map(str::to_string),
            rule_id: f.rule_id.to_string(),
            first_seen: String::new(),
            node: String::new(),
        },
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn engine_is_send_and_sync() {
        assert_send_sync::<Engine>();
    }
}
