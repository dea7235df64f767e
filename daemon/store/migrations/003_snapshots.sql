-- Snapshots: immutable, versioned captures of a scenario (DESIGN.md §1), their tags and
-- cassettes, and the snapshot a run replayed. Rows are inserted and deleted, never updated.
-- Listing pages by keyset on `id` (uuid7, so id order is creation order): every filter has
-- an index that ends in the id, so a page is an index range, never an OFFSET scan.
CREATE TABLE snapshots (
    id                      TEXT PRIMARY KEY,     -- uuid7
    name                    TEXT NOT NULL,
    version                 INTEGER NOT NULL,     -- 1, 2, … per name
    description             TEXT NOT NULL DEFAULT '',
    tags_json               TEXT NOT NULL DEFAULT '[]',  -- as given; snapshot_tags indexes them
    pipeline_format         TEXT NOT NULL,        -- dot | recipe
    pipeline_source         TEXT NOT NULL,        -- redacted
    pipeline_name           TEXT NOT NULL,
    pipeline_hash           TEXT NOT NULL,        -- the graph digest, as runs.pipeline_hash
    inputs_json             TEXT NOT NULL DEFAULT '{}',  -- redacted
    variables_json          TEXT,                 -- redacted; NULL in schema version 1
    settings_json           TEXT NOT NULL DEFAULT '{}',  -- redacted
    invariants_json         TEXT NOT NULL DEFAULT '[]',
    reference_run_id        TEXT,                 -- the run it was made from (no FK: runs stay)
    reference_metrics_json  TEXT,                 -- that run's metrics when it was made
    has_cassette            INTEGER NOT NULL DEFAULT 0,
    cassette_calls          INTEGER NOT NULL DEFAULT 0,
    schema_version          INTEGER NOT NULL,     -- shape of the JSON columns
    created_at              TEXT NOT NULL,
    UNIQUE (name, version)
);
CREATE INDEX snapshots_by_name ON snapshots(name, id);
CREATE INDEX snapshots_by_pipeline_name ON snapshots(pipeline_name, id);
CREATE INDEX snapshots_by_pipeline_hash ON snapshots(pipeline_hash, id);
CREATE INDEX snapshots_by_time ON snapshots(created_at, id);

-- One row per tag of a snapshot: listing by tag walks (tag, snapshot_id) newest first.
CREATE TABLE snapshot_tags (
    tag             TEXT NOT NULL,
    snapshot_id     TEXT NOT NULL REFERENCES snapshots(id) ON DELETE CASCADE,
    PRIMARY KEY (tag, snapshot_id)
) WITHOUT ROWID;
CREATE INDEX snapshot_tags_by_snapshot ON snapshot_tags(snapshot_id, tag);

-- A snapshot's own copy of its source run's calls (judge calls included), as in `calls`.
CREATE TABLE snapshot_calls (
    snapshot_id     TEXT NOT NULL REFERENCES snapshots(id) ON DELETE CASCADE,
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
    created_at      TEXT NOT NULL,
    PRIMARY KEY (snapshot_id, seq)
);

-- The snapshot a run replays (no FK: deleting a snapshot never touches its runs).
ALTER TABLE runs ADD COLUMN snapshot_id TEXT;
CREATE INDEX runs_by_snapshot ON runs(snapshot_id, created_at);
