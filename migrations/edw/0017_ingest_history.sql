-- 0017: what ingest and the incremental measure need to know about earlier loads.

-- The resource types each load batch merged. A resource sent again for a patient of
-- another person can only be held by another batch of the same source (within a file an id
-- is valid once: a repeat is quarantined), so ingest looks for the old copy only when
-- another batch may hold the chunk's type: one still being loaded, or a merged one that
-- recorded the type here. Batches loaded before this table existed may hold any type ('*').
CREATE TABLE staging.batch_type (
    batch_id      bigint NOT NULL REFERENCES staging.load_batch (id) ON DELETE CASCADE,
    resource_type text   NOT NULL,
    PRIMARY KEY (batch_id, resource_type)
);
INSERT INTO staging.batch_type (batch_id, resource_type) SELECT id, '*' FROM staging.load_batch;

-- Persons who lost a resource to another patient (it was sent again about another patient):
-- none of their rows changed, yet their measure results may, so an incremental measure
-- evaluates them again (the change number orders them with every other change).
CREATE TABLE edw.resource_move (
    change_no bigint      NOT NULL DEFAULT nextval('edw.change_seq') PRIMARY KEY,
    person_id bigint      NOT NULL,
    moved_at  timestamptz NOT NULL DEFAULT now()
);
