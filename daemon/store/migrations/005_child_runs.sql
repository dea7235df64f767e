-- A manager node's child run (attractor §4.11) names its parent; the parent finds its
-- children through the index. `parent_key` is the manager node's visit and attempt
-- (`node:visit:attempt`), so that a resumed or replayed parent finds the same child.
ALTER TABLE runs ADD COLUMN parent_run_id TEXT;
ALTER TABLE runs ADD COLUMN parent_node TEXT;
ALTER TABLE runs ADD COLUMN parent_key TEXT;

CREATE INDEX runs_by_parent ON runs(parent_run_id, parent_key);
