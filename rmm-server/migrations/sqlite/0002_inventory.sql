-- Plugin results per agent (SPEC §8): the latest result of each plugin.
CREATE TABLE inventory (
    agent_id     TEXT NOT NULL,
    plugin       TEXT NOT NULL,
    result       TEXT NOT NULL,
    error        TEXT,
    collected_at BIGINT NOT NULL,
    received_at  BIGINT NOT NULL,
    PRIMARY KEY (agent_id, plugin)
);
