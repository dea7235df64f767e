-- Trial sets, and what a run records and replays.
CREATE TABLE trial_sets (
    id              TEXT PRIMARY KEY,        -- uuid7
    pipeline_hash   TEXT NOT NULL REFERENCES pipelines(hash),
    pipeline_name   TEXT NOT NULL,
    status          TEXT NOT NULL,           -- running completed cancelled
    trials          INTEGER NOT NULL,
    concurrency     INTEGER NOT NULL,
    early_stop      INTEGER NOT NULL DEFAULT 0,
    pass_threshold  REAL NOT NULL,
    set_dir         TEXT NOT NULL,           -- relative to the home
    summary_json    TEXT NOT NULL DEFAULT '{}',  -- aggregates as of the last finished trial
    created_at      TEXT NOT NULL,
    ended_at        TEXT
);
ALTER TABLE runs ADD COLUMN record TEXT NOT NULL DEFAULT 'full';   -- full | metadata_only
ALTER TABLE runs ADD COLUMN replay_of TEXT;                        -- the cassette's run id
ALTER TABLE runs ADD COLUMN replay_mode TEXT;                      -- recorded | hybrid | live
ALTER TABLE runs ADD COLUMN trial_set_id TEXT REFERENCES trial_sets(id);
ALTER TABLE runs ADD COLUMN trial_index INTEGER;

CREATE INDEX runs_by_trial_set ON runs(trial_set_id, trial_index);
