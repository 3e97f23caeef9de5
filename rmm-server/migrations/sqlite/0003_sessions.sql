-- Sessions end when what they were issued for changes: every token carries
-- the user's token_version, which a password change, role change or
-- disable increments. A disabled user cannot log in.
ALTER TABLE users ADD COLUMN token_version BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN disabled_at BIGINT;
