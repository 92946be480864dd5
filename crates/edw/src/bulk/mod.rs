//! FHIR Bulk Data Access 2.0: Group-level `$export` from the EDW. [`engine`] writes an
//! export's files; [`http`] is the async request pattern (kick-off, status, files) and
//! [`routes`] the router the server merges.
//!
//! **What a Group export contains.** The resources of a person are the EDW's view the
//! measure engine uses (`crate::measure`): the exact source lines (`staging.raw_line`)
//! behind the current rows of all the person's source records (typed tables and
//! `edw.resource`). The Patient resource is the primary record's (lowest source record
//! id); its `id` is the EDW person id, and every reference to one of the person's
//! source Patients becomes `Patient/{person id}`. Other resources keep the ids their
//! source sent (two feeds sending the same type and id collide: the first wins on the
//! client). Also exported: the Group itself (`type` person, `actual` true, `member`s
//! `Patient/{person id}`, `managingEntity` the practitioner, or for a care team its
//! Organization, by source id), and the Practitioner, Organization and shared
//! resources (Medication, Location, ... rows of `edw.resource` about no patient) that
//! exported resources reference: their source lines, or for reference data without a
//! line a resource built from the row.
//!
//! **Who is exported.** Every query runs as the client's organisation role, so
//! row-level security decides: a Group member of another organisation is not in the
//! Group resource, not counted and not exported, even though the Group lists them.
//! The raw text of the selected rows is then read by key as the server's own role
//! (`staging.raw_line` has no organisation and is not granted to org roles).
//!
//! **transactionTime and `_since`.** At kick-off the server waits for in-flight source
//! writes (ingest, matching and attribution hold `measure::SOURCE_WRITE_LOCK` shared),
//! reads the change watermark W (`edw.change_seq`) and records (transactionTime, W) in
//! `edw.bulk_clock`; the export's snapshot starts after that. `_since=T` maps to the
//! greatest watermark recorded at or before T; when there is none the export is full.
//! With a watermark W:
//! * a member who joined the Group after W (`patient_group_member.joined_change_no >
//!   W`), or any of whose source records changed after W (a record matched to them,
//!   new demographics), arrives **whole**: every resource of their record, as a full
//!   export would send it (the IG's rule for new members);
//! * any other member gets only the resources whose row changed after W;
//! * `deleted` (NDJSON Bundles of type transaction, one per patient, entry
//!   `request: {method: DELETE, url: "Patient/{id}"}`: the client removes that
//!   patient's compartment) lists members who left the Group after W and are not
//!   members again (`edw.patient_group_left`) whom the organisation can still see or
//!   whose person has no source record left, and current members whose person has no
//!   source record left (merged into another person, who then arrives whole since
//!   their records changed). A member who left after moving to another organisation is
//!   not listed (the organisation can no longer see them).
//! * Single resources are never deleted by the EDW (sources only upsert; a record
//!   moved to another person keeps its resources' ids, so the client's upsert moves
//!   them), so `deleted` holds no other entries.
//!
//! **`_type` / `_typeFilter`.** `_type`: comma-separated, any type `engine::exportable`;
//! another is a 400. `_typeFilter`: `Type?code=..&category=..&status=..` token search
//! (`system|code`, `|code` or `code`, values comma-separated = OR) on the JSON;
//! parameters of one filter are AND-ed, several filters of a type OR-ed. Another search
//! parameter is a 400, or with `Prefer: handling=lenient` ignored and reported as an
//! OperationOutcome line in the manifest's `error` file.

pub mod engine;
pub mod http;

pub use http::routes;
