-- Pipelines, runs, stages, calls and events: the index of everything a run recorded.
CREATE TABLE pipelines (
    hash        TEXT PRIMARY KEY,            -- sha256 of the canonical graph
    name        TEXT NOT NULL,
    format      TEXT NOT NULL,               -- dot | recipe
    source      TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

CREATE TABLE runs (
    id              TEXT PRIMARY KEY,        -- uuid7
    pipeline_hash   TEXT NOT NULL REFERENCES pipelines(hash),
    pipeline_name   TEXT NOT NULL,
    status          TEXT NOT NULL,           -- pending running waiting completed failed cancelled budget_exceeded
    outcome         TEXT,                    -- success | fail, once finished
    failure_reason  TEXT,
    resumable       INTEGER NOT NULL DEFAULT 0,
    run_dir         TEXT NOT NULL,           -- relative to the home
    trace_id        TEXT NOT NULL,
    inputs_json     TEXT NOT NULL DEFAULT '{}',
    settings_json   TEXT NOT NULL DEFAULT '{}',   -- redacted
    current_node    TEXT,
    created_at      TEXT NOT NULL,
    started_at      TEXT,
    ended_at        TEXT,
    resumed_from    TEXT,                    -- the checkpoint's node when resumed
    cost_usd        REAL NOT NULL DEFAULT 0,
    input_tokens    INTEGER NOT NULL DEFAULT 0,
    output_tokens   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX runs_by_status ON runs(status, created_at);
CREATE INDEX runs_by_pipeline ON runs(pipeline_name, created_at);
CREATE INDEX runs_by_time ON runs(created_at);

CREATE TABLE stages (
    run_id          TEXT NOT NULL REFERENCES runs(id),
    seq             INTEGER NOT NULL,        -- order of completion within the run
    node_id         TEXT NOT NULL,
    attempt         INTEGER NOT NULL,
    status          TEXT NOT NULL,           -- the outcome status
    handler         TEXT NOT NULL,
    branch          TEXT,                    -- parallel branch, when inside one
    started_at      TEXT NOT NULL,
    ended_at        TEXT NOT NULL,
    duration_ms     REAL NOT NULL,
    outcome_json    TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);

CREATE TABLE calls (
    id              TEXT PRIMARY KEY,        -- uuid7
    run_id          TEXT NOT NULL REFERENCES runs(id),
    trace_id        TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    node_id         TEXT NOT NULL,
    attempt         INTEGER NOT NULL,
    kind            TEXT NOT NULL,           -- model | tool
    request_json    TEXT NOT NULL,
    response_json   TEXT,
    input_tokens    INTEGER NOT NULL DEFAULT 0,
    output_tokens   INTEGER NOT NULL DEFAULT 0,
    cost_usd        REAL NOT NULL DEFAULT 0,
    latency_ms      REAL NOT NULL DEFAULT 0,
    error           TEXT,
    finish_reason   TEXT,
    created_at      TEXT NOT NULL
);
CREATE INDEX calls_by_run ON calls(run_id, seq);
CREATE INDEX calls_by_trace ON calls(trace_id, seq);

CREATE TABLE events (
    run_id          TEXT NOT NULL REFERENCES runs(id),
    seq             INTEGER NOT NULL,
    type            TEXT NOT NULL,           -- attractor §9.6 names: StageStarted, ...
    data_json       TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);
