-- 0006: Groups sent by a source (e.g. a PCP's panel), kept as sent; the EDW's own
-- computed panels are edw.patient_group (from attribution).
CREATE TABLE edw.source_group (
    id            bigserial PRIMARY KEY,
    source        text NOT NULL,
    source_id     text NOT NULL,
    name          text,
    type          text,
    managing_ref  text,               -- managingEntity reference as sent
    practitioner_id bigint REFERENCES edw.practitioner (id),
    content_hash  text NOT NULL,
    change_no     bigint NOT NULL DEFAULT nextval('edw.change_seq'),
    batch_id      bigint REFERENCES staging.load_batch (id),
    line_no       bigint,
    UNIQUE (source, source_id)
);
CREATE TABLE edw.source_group_member (
    group_id          bigint NOT NULL REFERENCES edw.source_group (id) ON DELETE CASCADE,
    source_patient_id bigint NOT NULL REFERENCES edw.source_patient (id),
    PRIMARY KEY (group_id, source_patient_id)
);
CREATE INDEX source_group_member_patient ON edw.source_group_member (source_patient_id);
COMMENT ON INDEX edw.source_group_member_patient IS 'which source panels a patient is on';
ALTER TABLE edw.source_group_member ENABLE ROW LEVEL SECURITY;
CREATE POLICY org_rows ON edw.source_group_member FOR SELECT
    USING (source_patient_id IN (SELECT id FROM edw.source_patient));
GRANT SELECT ON edw.source_group, edw.source_group_member TO edw_org_reader;
