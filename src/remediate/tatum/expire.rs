//! `keysentry incidents expire ID [--force]`: the owner asks for this key
//! to be expired rather than regenerated. Expiring deletes the Virtual
//! Accounts and notification subscriptions bound to the key, irreversibly,
//! so with anything bound (or not yet counted) it takes `--force`, per
//! incident; the config-wide `force_expire` stays as it was.

use super::{ExpireRequest, TatumData, PROVIDER};
use crate::remediate::RemediateError;
use crate::store::{Stage, Store};

pub(crate) fn request(store: &Store, id: i64, force: bool) -> Result<String, RemediateError> {
    let mut row = store.incident(id)?.ok_or(RemediateError::NoIncident(id))?;
    let refuse = |why: String| Err(RemediateError::Expire(why));
    if row.provider != PROVIDER {
        return refuse(format!(
            "incident {id} is a {} key; `incidents expire` expires Tatum keys",
            row.provider
        ));
    }
    if row.state.is_final() {
        return Err(RemediateError::Finished {
            id,
            state: row.state,
        });
    }
    if !matches!(
        row.stage,
        Stage::Detected | Stage::Verified | Stage::Contained | Stage::Inventoried
    ) {
        return refuse(format!(
            "incident {id} is past its rotation (stage {}): the key was already regenerated or expired",
            row.stage
        ));
    }
    let (mut data, _) = row.playbook_data.get::<TatumData>();
    let show = |n: Option<u64>| n.map_or("an unknown number of".to_string(), |n| n.to_string());
    // Unknown counts count as bound: expiring blind could delete them.
    let bound =
        data.subscriptions.map_or(true, |n| n > 0) || data.virtual_accounts.map_or(true, |n| n > 0);
    let what = format!(
        "{} virtual accounts and {} notification subscriptions",
        show(data.virtual_accounts),
        show(data.subscriptions)
    );
    if bound && !force {
        return refuse(format!(
            "expiring incident {id}'s key deletes the {what} bound to it, irreversibly; run `keysentry incidents expire {id} --force` to expire it anyway (or let keysentry regenerate it)"
        ));
    }
    data.expire_requested = Some(ExpireRequest { force });
    row.playbook_data.set(&data);
    if row.stage == Stage::Inventoried {
        // Past the inventory, which settles the action: settle it here.
        row.action = Some("expire".into());
    }
    // Due at once: the next pass (the daemon's poll, a scan) expires it.
    row.retry_at_ms = None;
    store.save_incident(&row)?;
    Ok(if bound {
        format!("incident {id}: the key will be expired on keysentry's next pass, deleting the {what} bound to it")
    } else {
        format!("incident {id}: the key will be expired on keysentry's next pass (nothing is bound to it)")
    })
}
