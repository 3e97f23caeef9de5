-- Audit retention: rows may be deleted only by the retention path, which
-- (inside one transaction) records its cutoff in audit_prune, deletes
-- older rows and removes the cutoff. Any other UPDATE or DELETE still fails.
CREATE TABLE audit_prune (cutoff BIGINT NOT NULL);
CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND EXISTS (SELECT 1 FROM audit_prune WHERE OLD.at < audit_prune.cutoff) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$;
