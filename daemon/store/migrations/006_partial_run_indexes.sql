-- Runs of a snapshot and child runs of a manager are few; most runs (every trial, every
-- single run) have neither. Indexed only where the column is set, a run's insert writes
-- two index entries fewer: sqlite uses an index `WHERE c IS NOT NULL` for any `c = ?`.
DROP INDEX runs_by_snapshot;
CREATE INDEX runs_by_snapshot ON runs(snapshot_id, created_at) WHERE snapshot_id IS NOT NULL;
DROP INDEX runs_by_parent;
CREATE INDEX runs_by_parent ON runs(parent_run_id, parent_key) WHERE parent_run_id IS NOT NULL;
