//! The read side every window onto the store shares: `keysentry incidents
//! list/show` and the dashboard (its pages and its JSON API) call these, so
//! a filter, an ordering or a field means the same thing everywhere.
//!
//! Everything here is built from store rows, which hold fingerprints and
//! redacted forms only: no view can carry a key.

use super::timeline::{self, Entry};
use super::{AlertRow, EventRow, IncidentRow, JournalEntry, LocationRow, State, Store, StoreError};
use crate::store::db::params;
use std::collections::BTreeMap;

/// States in which an incident waits for a person: the engine will not
/// finish it alone (a manual hand-over or rotation, a failure it cannot
/// retry its way out of). Lists show these first.
pub const NEEDS_A_HUMAN: &[State] = &[State::WaitingManual, State::Failed];

pub fn needs_a_human(state: State) -> bool {
    NEEDS_A_HUMAN.contains(&state)
}

/// States that mean the key was made harmless (frozen, revoked, rotated,
/// expired and what follows): the first change into one is the moment of
/// containment.
const CONTAINED_STATES: &str =
    "'contained', 'rotated', 'expired', 'revoked', 'confirmed', 'closed'";

/// Which incidents a list shows; `None` matches any.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IncidentFilter {
    pub state: Option<State>,
    pub provider: Option<String>,
    pub owner: Option<String>,
    /// A location's source (`file`, `git`, `log`, `github`, `stdin`).
    pub source: Option<String>,
    /// A node (daemon) that recorded one of its locations (a fleet).
    pub node: Option<String>,
    /// Oldest first instead of newest first (after those needing a human).
    pub oldest_first: bool,
    /// Incidents that need a human come first (the dashboard); `incidents
    /// list` keeps the plain id order it has always printed.
    pub human_first: bool,
}

/// One page of a list: `offset` rows skipped, at most `limit` returned.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Page {
    pub offset: usize,
    pub limit: usize,
}

impl Page {
    pub const ALL: Page = Page {
        offset: 0,
        limit: i64::MAX as usize,
    };
}

/// One line of a list: the incident, what was done, where it was found.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct IncidentSummary {
    #[serde(flatten)]
    pub row: IncidentRow,
    /// The provider steps that succeeded, in order, each once.
    pub actions: Vec<String>,
    /// Every location, as [`LocationRow::display`] shows it.
    pub locations: Vec<String>,
    pub needs_a_human: bool,
}

/// A page of a list and how many incidents match in all.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct IncidentList {
    pub total: u64,
    pub offset: usize,
    pub incidents: Vec<IncidentSummary>,
}

/// Everything about one incident, as `incidents show --json` prints it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct IncidentView {
    pub incident: IncidentRow,
    /// When the engine looks at it next (UTC), if it waits for a time.
    pub next_check: Option<String>,
    pub locations: Vec<LocationRow>,
    pub journal: Vec<JournalEntry>,
    pub events: Vec<EventRow>,
    pub alerts: Vec<AlertRow>,
    pub timeline: Vec<Entry>,
    /// The new key sealed in escrow, if one is (never the key, nor its
    /// ciphertext: `incidents new-key` prints that).
    pub escrow: Option<EscrowSummary>,
}

/// That a new key is in escrow, and to whom it is sealed.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EscrowSummary {
    /// The new key's fingerprint.
    pub fingerprint: String,
    pub created_at: String,
    /// The age public keys it was sealed to.
    pub recipients: Vec<String>,
}

/// Incidents opened and contained on one day (UTC).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Day {
    /// `YYYY-MM-DD`.
    pub day: String,
    pub opened: u64,
    pub contained: u64,
    /// Median time from detection to containment of those contained that
    /// day, in seconds.
    pub ttc_median_secs: Option<f64>,
}

/// What the dashboard charts.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Stats {
    /// The last 30 days, oldest first, every day present.
    pub days: Vec<Day>,
    /// Incidents contained in those days.
    pub contained: u64,
    /// Time from detection to containment of those, in seconds.
    pub ttc_median_secs: Option<f64>,
    pub ttc_p90_secs: Option<f64>,
}

/// The provider steps that succeeded, in order, each once.
pub fn actions_taken(journal: &[JournalEntry]) -> Vec<String> {
    let mut steps: Vec<String> = Vec::new();
    for e in journal.iter().filter(|e| e.is_ok()) {
        if !steps.contains(&e.step) {
            steps.push(e.step.clone());
        }
    }
    steps
}

// The casts name the parameters' type for PostgreSQL, which cannot infer
// it from `? IS NULL`.
const WHERE: &str = "(CAST(?1 AS TEXT) IS NULL OR state = ?1) \
     AND (CAST(?2 AS TEXT) IS NULL OR provider = ?2) \
     AND (CAST(?3 AS TEXT) IS NULL OR owner = ?3) AND (CAST(?4 AS TEXT) IS NULL OR EXISTS (SELECT 1 FROM locations l \
     WHERE l.incident_id = incidents.id AND l.source = ?4)) \
     AND (CAST(?5 AS TEXT) IS NULL OR EXISTS (SELECT 1 FROM locations n \
     WHERE n.incident_id = incidents.id AND n.node = ?5))";

impl Store {
    /// The incidents matching `filter`, one page of them.
    pub fn incident_list(
        &self,
        filter: &IncidentFilter,
        page: Page,
    ) -> Result<IncidentList, StoreError> {
        let f = filter;
        let args = params![f.state, f.provider, f.owner, f.source, f.node];
        let total: i64 = self.with_conn(|c| {
            c.query_row(
                &format!("SELECT COUNT(*) FROM incidents WHERE {WHERE}"),
                args,
                |r| r.get(0),
            )
        })?;
        let human = if f.human_first {
            format!(
                "CASE WHEN state IN ({}) THEN 0 ELSE 1 END, ",
                NEEDS_A_HUMAN
                    .iter()
                    .map(|s| format!("'{}'", s.as_str()))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else {
            String::new()
        };
        let order = if f.oldest_first { "ASC" } else { "DESC" };
        let rows = self.query_incidents(
            &format!("{WHERE} ORDER BY {human}id {order} LIMIT ?6 OFFSET ?7"),
            params![
                f.state,
                f.provider,
                f.owner,
                f.source,
                f.node,
                page.limit.min(i64::MAX as usize) as i64,
                page.offset.min(i64::MAX as usize) as i64
            ],
        )?;
        let mut incidents = Vec::with_capacity(rows.len());
        for row in rows {
            incidents.push(IncidentSummary {
                actions: actions_taken(&self.journal(row.id)?),
                locations: self
                    .locations(row.id)?
                    .iter()
                    .map(|l| l.display())
                    .collect(),
                needs_a_human: needs_a_human(row.state),
                row,
            });
        }
        Ok(IncidentList {
            total: total.max(0) as u64,
            offset: page.offset,
            incidents,
        })
    }

    /// Incidents per state, every state present (zero where none).
    pub fn state_counts(&self) -> BTreeMap<&'static str, u64> {
        let found = self.incident_counts();
        State::ALL
            .iter()
            .map(|s| (s.as_str(), found.get(s.as_str()).copied().unwrap_or(0)))
            .collect()
    }

    /// Everything about incident `id`, `None` if there is none.
    pub fn incident_view(&self, id: i64) -> Result<Option<IncidentView>, StoreError> {
        let Some(incident) = self.incident(id)? else {
            return Ok(None);
        };
        let locations = self.locations(id)?;
        let journal = self.journal(id)?;
        let alerts = self.alerts(id)?;
        let events = self.events(id)?;
        let next_check = self.next_check(&incident)?;
        let timeline = timeline::build(&incident, &locations, &journal, &events, &alerts);
        let escrow = self.escrow(id)?.map(|e| EscrowSummary {
            fingerprint: e.fingerprint,
            created_at: e.created_at,
            recipients: e.recipients,
        });
        Ok(Some(IncidentView {
            incident,
            next_check,
            locations,
            journal,
            events,
            alerts,
            timeline,
            escrow,
        }))
    }

    /// When the engine's poller looks at an open incident next (UTC), if it
    /// waits for a time.
    fn next_check(&self, row: &IncidentRow) -> Result<Option<String>, StoreError> {
        let Some(ms) = row.retry_at_ms.filter(|_| !row.state.is_final()) else {
            return Ok(None);
        };
        // None for a time past year 9999 or before 1970 (a bad clock).
        let secs = ms.div_euclid(1000);
        let (y, mo, d) = crate::rules::template::civil_from_days(secs.div_euclid(86_400));
        if !(1970..=9999).contains(&y) {
            return Ok(None);
        }
        let t = secs.rem_euclid(86_400);
        Ok(Some(format!(
            "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}Z",
            t / 3600,
            t / 60 % 60,
            t % 60
        )))
    }

    /// Makes an open incident due now, whatever it waits for (a failure's
    /// backoff, the next poll of a manual rotation): the engine's next pass
    /// takes it up. `false` when it is finished or resolved (nothing to
    /// retry) or does not exist.
    pub fn due_now(&self, id: i64) -> Result<bool, StoreError> {
        self.with_conn(|c| {
            c.execute(
                "UPDATE incidents SET retry_at_ms = NULL \
                 WHERE id = ?1 AND state NOT IN ('closed', 'not-live', 'resolved')",
                [id],
            )
            .map(|n| n == 1)
        })
    }

    /// Incidents opened and contained per day over the last 30 days (UTC),
    /// and how long containment took for those contained then.
    pub fn stats(&self) -> Result<Stats, StoreError> {
        let first_contained = format!(
            "SELECT incident_id, MIN(at) AS at FROM incident_events \
             WHERE to_state IN ({CONTAINED_STATES}) GROUP BY incident_id"
        );
        // The 30 days, in Rust: the same on both engines.
        let today = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64 / 86_400)
            .unwrap_or(0);
        let day = |n: i64| {
            let (y, m, d) = crate::rules::template::civil_from_days(n);
            format!("{y:04}-{m:02}-{d:02}")
        };
        let days: Vec<String> = (today - 29..=today).map(day).collect();
        let since = format!("'{}'", day(today - 29));
        self.with_conn(|c| {
            let seconds_between = match c.dialect() {
                crate::store::db::Dialect::Sqlite => {
                    "(julianday(x.at) - julianday(i.created_at)) * 86400.0"
                }
                crate::store::db::Dialect::Postgres => {
                    "CAST(EXTRACT(EPOCH FROM (CAST(x.at AS timestamptz) \
                     - CAST(i.created_at AS timestamptz))) AS DOUBLE PRECISION)"
                }
            };
            let per_day = |sql: &str| -> crate::store::db::Result<BTreeMap<String, u64>> {
                c.prepare(sql)?
                    .query_map(crate::store::db::params![], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
                    })?
                    .map(|r| r.map(|(d, n)| (d, n.max(0) as u64)))
                    .collect()
            };
            let opened = per_day(&format!(
                "SELECT substr(created_at, 1, 10), COUNT(*) FROM incidents \
                 WHERE created_at >= {since} GROUP BY 1"
            ))?;
            let contained = per_day(&format!(
                "SELECT substr(at, 1, 10), COUNT(*) FROM ({first_contained}) fc \
                 WHERE at >= {since} GROUP BY 1"
            ))?;
            let contained_after: Vec<(String, f64)> = c
                .prepare(&format!(
                    "SELECT substr(x.at, 1, 10), {seconds_between} \
                     FROM incidents i JOIN ({first_contained}) x ON x.incident_id = i.id \
                     WHERE x.at >= {since}"
                ))?
                .query_map(crate::store::db::params![], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, f64>(1)?))
                })?
                .collect::<crate::store::db::Result<_>>()?;
            let mut per_day_ttc: BTreeMap<String, Vec<f64>> = BTreeMap::new();
            for (day, secs) in &contained_after {
                per_day_ttc.entry(day.clone()).or_default().push(*secs);
            }
            per_day_ttc
                .values_mut()
                .for_each(|v| v.sort_by(f64::total_cmp));
            let mut ttc: Vec<f64> = contained_after.into_iter().map(|(_, s)| s).collect();
            ttc.sort_by(f64::total_cmp);
            Ok(Stats {
                days: days
                    .iter()
                    .cloned()
                    .map(|day| Day {
                        opened: opened.get(&day).copied().unwrap_or(0),
                        contained: contained.get(&day).copied().unwrap_or(0),
                        ttc_median_secs: per_day_ttc.get(&day).and_then(|v| quantile(v, 0.5)),
                        day,
                    })
                    .collect(),
                contained: ttc.len() as u64,
                ttc_median_secs: quantile(&ttc, 0.5),
                ttc_p90_secs: quantile(&ttc, 0.9),
            })
        })
    }
}

/// The nearest-rank quantile of sorted `v`.
fn quantile(v: &[f64], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let rank = (q * v.len() as f64).ceil() as usize;
    Some(v[rank.clamp(1, v.len()) - 1].max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::Fingerprint;
    use crate::store::NewIncident;

    fn plant(store: &Store, n: u8, provider: &str, source: &str) -> i64 {
        let fp = Fingerprint::of(format!("key-{n}").as_bytes());
        let item = NewIncident {
            fingerprint: fp,
            provider: provider.into(),
            rule_id: format!("{provider}.key"),
            rule_name: "a key".into(),
            redacted: "ab…yz".into(),
            owner: Some(format!("owner{}@example.com", n % 2)),
            location: LocationRow {
                source: source.into(),
                path: format!("f{n}"),
                line: 1,
                column: 1,
                commit: None,
                repo: None,
                author_email: None,
                rule_id: format!("{provider}.key"),
                first_seen: String::new(),
                node: String::new(),
            },
        };
        store.record_findings(&[item]).unwrap()[0].0
    }

    /// In a fleet each location names the daemon that saw it; the list
    /// filters on it.
    #[test]
    fn lists_filter_on_the_node_that_saw_a_location() {
        let store = Store::in_memory().unwrap();
        let id = plant(&store, 1, "tatum", "log");
        let by = |node: &str| IncidentFilter {
            node: Some(node.into()),
            ..IncidentFilter::default()
        };
        let page = Page {
            offset: 0,
            limit: 10,
        };
        let here = store.incident_list(&by(store.node()), page).unwrap();
        assert_eq!(
            here.incidents.iter().map(|i| i.row.id).collect::<Vec<_>>(),
            [id]
        );
        assert_eq!(store.locations(id).unwrap()[0].node, store.node());
        let elsewhere = store.incident_list(&by("another-host"), page).unwrap();
        assert_eq!(elsewhere.total, 0);
    }

    #[test]
    fn lists_filter_sort_page_and_put_those_needing_a_human_first() {
        let store = Store::in_memory().unwrap();
        for n in 0..6 {
            let source = if n < 3 { "log" } else { "git" };
            plant(
                &store,
                n,
                if n % 3 == 0 { "tatum" } else { "github" },
                source,
            );
        }
        let mut row = store.incident(2).unwrap().unwrap();
        row.fail("provider down".into()).unwrap();
        store.save_incident(&row).unwrap();
        let ids = |f: &IncidentFilter, page: Page| -> Vec<i64> {
            let l = store.incident_list(f, page).unwrap();
            l.incidents.iter().map(|s| s.row.id).collect()
        };
        let mut f = IncidentFilter {
            human_first: true,
            ..Default::default()
        };
        assert_eq!(ids(&f, Page::ALL), [2, 6, 5, 4, 3, 1]);
        f.oldest_first = true;
        assert_eq!(ids(&f, Page::ALL), [2, 1, 3, 4, 5, 6]);
        assert_eq!(
            ids(
                &f,
                Page {
                    offset: 2,
                    limit: 2
                }
            ),
            [3, 4]
        );
        assert_eq!(
            store
                .incident_list(
                    &f,
                    Page {
                        offset: 2,
                        limit: 2
                    }
                )
                .unwrap()
                .total,
            6
        );
        f.source = Some("log".into());
        f.provider = Some("github".into());
        assert_eq!(ids(&f, Page::ALL), [2, 3]);
        f.owner = Some("owner0@example.com".into());
        assert_eq!(ids(&f, Page::ALL), [3]);
        f = IncidentFilter {
            state: Some(State::Failed),
            ..Default::default()
        };
        assert_eq!(ids(&f, Page::ALL), [2]);
        assert_eq!(store.state_counts()["failed"], 1);
        assert_eq!(store.state_counts()["detected"], 5);
        assert_eq!(store.state_counts()["closed"], 0);
    }

    #[test]
    fn stats_count_today_and_time_to_containment() {
        let store = Store::in_memory().unwrap();
        let id = plant(&store, 1, "tatum", "log");
        plant(&store, 2, "tatum", "log");
        let mut row = store.incident(id).unwrap().unwrap();
        row.verify().unwrap();
        store.save_incident(&row).unwrap();
        row.contain().unwrap();
        store.save_incident(&row).unwrap();
        let s = store.stats().unwrap();
        assert_eq!(s.days.len(), 30);
        let today = s.days.last().unwrap();
        assert_eq!((today.opened, today.contained), (2, 1));
        assert_eq!(s.contained, 1);
        let median = s.ttc_median_secs.unwrap();
        assert!((0.0..60.0).contains(&median), "{median}");
    }

    #[test]
    fn due_now_only_for_open_incidents() {
        let store = Store::in_memory().unwrap();
        let id = plant(&store, 1, "tatum", "log");
        let mut row = store.incident(id).unwrap().unwrap();
        row.fail("down".into()).unwrap();
        row.retry_at_ms = Some(i64::MAX);
        store.save_incident(&row).unwrap();
        assert!(store.due_now(id).unwrap());
        assert_eq!(store.incident(id).unwrap().unwrap().retry_at_ms, None);
        store.resolve(id, "done", 1, 0, |_| false).unwrap();
        assert!(!store.due_now(id).unwrap());
        assert!(!store.due_now(99).unwrap());
    }

    /// Regression: `incidents show` and the incident page failed ("Invalid
    /// column type Null") for a retry time past SQLite's date range.
    #[test]
    fn a_next_check_out_of_the_date_range_reads_as_none_not_an_error() {
        let store = Store::in_memory().unwrap();
        let id = plant(&store, 1, "tatum", "log");
        let mut row = store.incident(id).unwrap().unwrap();
        row.retry_at_ms = Some(i64::MAX / 2);
        store.save_incident(&row).unwrap();
        assert_eq!(store.incident_view(id).unwrap().unwrap().next_check, None);
    }

    #[test]
    fn quantiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), Some(5.0));
        assert_eq!(quantile(&v, 0.9), Some(9.0));
        assert_eq!(quantile(&[], 0.5), None);
    }
}
