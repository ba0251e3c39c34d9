//! A stored delivery's work, shared by the router that stores it, the
//! queue that runs it and the processor that does it (in `deliveries` it
//! made `deliveries` and `processor` import each other).

use super::push::PushJob;
use super::secret_scanning::AlertJob;
use serde::{Deserialize, Serialize};
use std::time::{SystemTime, UNIX_EPOCH};

/// A stored delivery's work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Job {
    Push(PushJob),
    SecretScanningAlert(AlertJob),
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
