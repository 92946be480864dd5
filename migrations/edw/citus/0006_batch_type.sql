-- Which resource types each load batch merged (on the coordinator). On the cluster a
-- resource re-sent for a patient of another person must leave its old person's shard, and
-- finding it probes every shard with the chunk's ids (typed::moved_rows_sql): at 100,000
-- patients that probe was nine tenths of the cluster's ingest. Within one file an id is
-- valid once (duplicates are quarantined), so the probe is needed only when another batch
-- of the source may hold resources of the chunk's types: one still being loaded, or a
-- merged one that recorded the type here. The batches loaded before this table existed may
-- hold any type ('*').
CREATE TABLE staging.batch_type (
    batch_id      bigint NOT NULL REFERENCES staging.load_batch (id) ON DELETE CASCADE,
    resource_type text   NOT NULL,
    PRIMARY KEY (batch_id, resource_type)
);
INSERT INTO staging.batch_type (batch_id, resource_type) SELECT id, '*' FROM staging.load_batch;
