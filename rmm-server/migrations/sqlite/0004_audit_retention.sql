-- Audit retention: rows may be deleted only by the retention path, which
-- (inside one transaction) records its cutoff in audit_prune, deletes
-- older rows and removes the cutoff. Any other DELETE still aborts.
CREATE TABLE audit_prune (cutoff BIGINT NOT NULL);
DROP TRIGGER audit_log_no_delete;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
WHEN NOT EXISTS (SELECT 1 FROM audit_prune WHERE OLD.at < audit_prune.cutoff)
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
