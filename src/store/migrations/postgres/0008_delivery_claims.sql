-- Webhook replicas on one store: a delivery is claimed by the node that
-- runs it (until `claimed_until`, unix ms), so two replicas never run the
-- same delivery at once; a replica that dies leaves its claim to expire.
ALTER TABLE webhook_deliveries ADD COLUMN claimed_by TEXT;
ALTER TABLE webhook_deliveries ADD COLUMN claimed_until BIGINT;
