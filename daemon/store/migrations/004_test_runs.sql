-- Test runs (tests.run) and their per-snapshot results. A result row is written as soon as
-- its snapshot finishes, so that a test run cut off keeps what had finished.
CREATE TABLE test_runs (
    id              TEXT PRIMARY KEY,        -- uuid7
    status          TEXT NOT NULL,           -- running passed failed error budget_exceeded cancelled interrupted
    options_json    TEXT NOT NULL,           -- mode, trials, concurrency, stop_on_first_failure, selector
    summary_json    TEXT NOT NULL DEFAULT '{}',  -- counts by status, as of the last finished snapshot
    total_cost_usd  REAL NOT NULL DEFAULT 0,
    cost_limit_usd  REAL,
    message         TEXT,
    created_at      TEXT NOT NULL,
    ended_at        TEXT
);
CREATE INDEX test_runs_by_time ON test_runs(created_at, id);

CREATE TABLE test_results (
    test_run_id     TEXT NOT NULL REFERENCES test_runs(id),
    idx             INTEGER NOT NULL,        -- position in the test run
    snapshot_id     TEXT NOT NULL,           -- no foreign key: deleting a snapshot keeps history
    name            TEXT NOT NULL,
    version         INTEGER NOT NULL,
    status          TEXT NOT NULL,           -- pending running passed failed error skipped budget_exceeded
    result_json     TEXT NOT NULL,           -- the SnapshotTestResult
    cost_usd        REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (test_run_id, idx)
);
CREATE INDEX test_results_by_snapshot ON test_results(snapshot_id);
