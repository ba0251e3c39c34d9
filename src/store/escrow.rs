//! The `escrow` table (migration 0006): new keys sealed with age, as
//! armored ciphertext only. Sealing and opening are
//! `remediate::escrow`'s; this file only keeps the rows.

use super::{Store, StoreError};
use crate::scan::Fingerprint;
use crate::store::db::OptionalExtension;

/// One escrowed key: never the key, only its ciphertext and fingerprint.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EscrowRow {
    pub incident_id: i64,
    /// The new key's fingerprint.
    pub fingerprint: String,
    pub created_at: String,
    /// ASCII-armored age ciphertext (`age -d` reads it).
    pub ciphertext: String,
    /// The age public keys it was sealed to.
    pub recipients: Vec<String>,
}

impl Store {
    /// Keeps a sealed new key of `incident`.
    pub fn put_escrow(
        &self,
        incident: i64,
        fingerprint: &Fingerprint,
        ciphertext: &str,
        recipients: &[String],
    ) -> Result<(), StoreError> {
        let recipients = serde_json::to_string(recipients).unwrap_or_else(|_| "[]".into());
        self.with_conn(|c| {
            c.execute(
                "INSERT INTO escrow (incident_id, fingerprint, ciphertext, recipients) \
                 VALUES (?1, ?2, ?3, ?4)",
                crate::store::db::params![
                    incident,
                    fingerprint.to_string(),
                    ciphertext,
                    recipients
                ],
            )
            .map(|_| ())
        })
    }

    /// The newest sealed key of `incident`, if any.
    pub fn escrow(&self, incident: i64) -> Result<Option<EscrowRow>, StoreError> {
        self.with_conn(|c| {
            c.query_row(
                "SELECT incident_id, fingerprint, created_at, ciphertext, recipients FROM escrow \
                 WHERE incident_id = ?1 ORDER BY id DESC LIMIT 1",
                [incident],
                |r| {
                    let recipients: String = r.get(4)?;
                    Ok(EscrowRow {
                        incident_id: r.get(0)?,
                        fingerprint: r.get(1)?,
                        created_at: r.get(2)?,
                        ciphertext: r.get(3)?,
                        recipients: serde_json::from_str(&recipients).unwrap_or_default(),
                    })
                },
            )
            .optional()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_ciphertext_and_refuses_anything_else() {
        let store = Store::in_memory().unwrap();
        store
            .with_conn(|c| {
                c.execute(
                    "INSERT INTO incidents (id, fingerprint, provider, rule_id, rule_name, redacted, state, stage) \
                     VALUES (1, 'f', 'tatum', 'tatum.api-key', 'Tatum', 't-…', 'rotated', 'rotated')",
                    crate::store::db::params![],
                )
            })
            .unwrap();
        let fp = Fingerprint::of(b"new");
        assert_eq!(store.escrow(1).unwrap(), None);
        let armored = "-----BEGIN AGE ENCRYPTED FILE-----\nx\n-----END AGE ENCRYPTED FILE-----\n";
        store
            .put_escrow(1, &fp, armored, &["age1a".into()])
            .unwrap();
        store
            .put_escrow(1, &fp, &armored.replace('x', "y"), &[])
            .unwrap();
        let row = store.escrow(1).unwrap().unwrap();
        assert!(row.ciphertext.contains('y'));
        assert_eq!(row.fingerprint, fp.to_string());
        // A key in clear is no ciphertext: the schema refuses it.
        assert!(store.put_escrow(1, &fp, "t-plain-key", &[]).is_err());
    }
}
