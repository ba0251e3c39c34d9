-- Escrow of new keys (src/remediate/escrow.rs): each new key a rotation
-- produced, sealed with age to the service's identity and the configured
-- recipients the moment it arrived, before any consumer was written. Only
-- the armored ciphertext is kept, never the key; `fingerprint` is the new
-- key's, so a pass can tell which consumers already hold it.
CREATE TABLE escrow (
    id           INTEGER PRIMARY KEY,
    incident_id  INTEGER NOT NULL REFERENCES incidents(id),
    fingerprint  TEXT    NOT NULL,
    created_at   TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    ciphertext   TEXT    NOT NULL
        CHECK (ciphertext LIKE '-----BEGIN AGE ENCRYPTED FILE-----%'),
    -- The age public keys it was sealed to, as a JSON array of strings.
    recipients   TEXT    NOT NULL
        CHECK (json_valid(recipients) AND json_type(recipients) = 'array')
);

CREATE INDEX escrow_by_incident ON escrow (incident_id, id);
