//! FHIR R4 resources used by the product. Elements the product does not use
//! are ignored on input (the EDW keeps the raw line for those).
//! Choice elements (`value[x]`, `effective[x]`, ...) are flattened into one
//! optional field per supported type.

use crate::datatypes::*;
use crate::fhir_element;
use serde_json::Value;

fhir_element!(
    /// Demographics of a person receiving care.
    Patient {
        id: Option<String>,
        meta: Option<Meta>,
        extension: Vec<Extension>,
        identifier: Vec<Identifier>,
        active: Option<bool>,
        name: Vec<HumanName>,
        telecom: Vec<ContactPoint>,
        gender: Option<String>,
        birth_date: Option<String>,
        deceased_boolean: Option<bool>,
        deceased_date_time: Option<String>,
        address: Vec<Address>,
        marital_status: Option<CodeableConcept>,
        communication: Vec<Value>,
        general_practitioner: Vec<Reference>,
        managing_organization: Option<Reference>,
    }
);

fhir_element!(
    /// A practitioner's qualification.
    PractitionerQualification {
        identifier: Vec<Identifier>,
        code: Option<CodeableConcept>,
        period: Option<Period>,
        issuer: Option<Reference>,
    }
);

fhir_element!(
    /// A person providing care.
    Practitioner {
        id: Option<String>,
        meta: Option<Meta>,
        extension: Vec<Extension>,
        identifier: Vec<Identifier>,
        active: Option<bool>,
        name: Vec<HumanName>,
        telecom: Vec<ContactPoint>,
        address: Vec<Address>,
        gender: Option<String>,
        birth_date: Option<String>,
        qualification: Vec<PractitionerQualification>,
    }
);

fhir_element!(
    /// A provider organization or payer.
    Organization {
        id: Option<String>,
        meta: Option<Meta>,
        extension: Vec<Extension>,
        identifier: Vec<Identifier>,
        active: Option<bool>,
        r#type: Vec<CodeableConcept>,
        name: Option<String>,
        alias: Vec<String>,
        telecom: Vec<ContactPoint>,
        address: Vec<Address>,
        part_of: Option<Reference>,
    }
);

fhir_element!(
    /// A member of a Group.
    GroupMember {
        entity: Option<Reference>,
        period: Option<Period>,
        inactive: Option<bool>,
    }
);

fhir_element!(
    /// A set of patients, e.g. a provider's panel.
    Group {
        id: Option<String>,
        meta: Option<Meta>,
        extension: Vec<Extension>,
        identifier: Vec<Identifier>,
        active: Option<bool>,
        r#type: Option<String>,
        actual: Option<bool>,
        code: Option<CodeableConcept>,
        name: Option<String>,
        quantity: Option<u64>,
        managing_entity: Option<Reference>,
        characteristic: Vec<Value>,
        member: Vec<GroupMember>,
    }
);

fhir_element!(
    /// A participant in an encounter.
    EncounterParticipant {
        r#type: Vec<CodeableConcept>,
        period: Option<Period>,
        individual: Option<Reference>,
    }
);

fhir_element!(
    /// A diagnosis relevant to an encounter.
    EncounterDiagnosis {
        condition: Option<Reference>,
        r#use: Option<CodeableConcept>,
        rank: Option<u32>,
    }
);

fhir_element!(
    /// Admission details of an encounter.
    EncounterHospitalization {
        admit_source: Option<CodeableConcept>,
        discharge_disposition: Option<CodeableConcept>,
    }
);

fhir_element!(
    /// A location where an encounter took place.
    EncounterLocation {
        location: Option<Reference>,
        status: Option<String>,
        period: Option<Period>,
    }
);

fhir_element!(
    /// An interaction between a patient and providers.
    Encounter {
        id: Option<String>,
        meta: Option<Meta>,
        extension: Vec<Extension>,
        identifier: Vec<Identifier>,
        status: Option<String>,
        class: Option<Coding>,
        r#type: Vec<CodeableConcept>,
        service_type: Option<CodeableConcept>,
        priority: Option<CodeableConcept>,
        subject: Option<Reference>,
        episode_of_care: Vec<Reference>,
        based_on: Vec<Reference>,
        participant: Vec<EncounterParticipant>,
        period: Option<Period>,
        length: Option<Quantity>,
        reason_code: Vec<CodeableConcept>,
        reason_reference: Vec<Reference>,
        diagnosis: Vec<EncounterDiagnosis>,
        hospitalization: Option<EncounterHospitalization>,
        location: Vec<EncounterLocation>,
        service_provider: Option<Reference>,
        part_of: Option<Reference>,
    }
);

fhir_element!(
    /// A problem, diagnosis or health concern.
    Condition {
        id: Option<String>,
        meta: Option<Meta>,
        extension: Vec<Extension>,
        identifier: Vec<Identifier>,
        clinical_status: Option<CodeableConcept>,
        verification_status: Option<CodeableConcept>,
        category: Vec<CodeableConcept>,
        severity: Option<CodeableConcept>,
        code: Option<CodeableConcept>,
        body_site: Vec<CodeableConcept>,
        subject: Option<Reference>,
        encounter: Option<Reference>,
        onset_date_time: Option<String>,
        onset_age: Option<Quantity>,
        onset_period: Option<Period>,
        onset_range: Option<Range>,
        onset_string: Option<String>,
        abatement_date_time: Option<String>,
        abatement_age: Option<Quantity>,
        abatement_period: Option<Period>,
        abatement_range: Option<Range>,
        abatement_string: Option<String>,
        recorded_date: Option<String>,
        recorder: Option<Reference>,
        asserter: Option<Reference>,
        note: Vec<Annotation>,
    }
);

fhir_element!(
    /// A reference range of an observation or component.
    ObservationReferenceRange {
        low: Option<Quantity>,
        high: Option<Quantity>,
        r#type: Option<CodeableConcept>,
        applies_to: Vec<CodeableConcept>,
        age: Option<Range>,
        text: Option<String>,
    }
);

fhir_element!(
    /// A component result of an observation (e.g. systolic in a BP panel).
    ObservationComponent {
        code: Option<CodeableConcept>,
        value_quantity: Option<Quantity>,
        value_codeable_concept: Option<CodeableConcept>,
        value_string: Option<String>,
        value_boolean: Option<bool>,
        value_integer: Option<i64>,
        value_range: Option<Range>,
        value_ratio: Option<Ratio>,
        value_time: Option<String>,
        value_date_time: Option<String>,
        value_period: Option<Period>,
        data_absent_reason: Option<CodeableConcept>,
        interpretation: Vec<CodeableConcept>,
        reference_range: Vec<ObservationReferenceRange>,
    }
);

fhir_element!(
    /// A measurement or assertion (vitals, labs, surveys, social history).
    Observation {
        id: Option<String>,
        meta: Option<Meta>,
        extension: Vec<Extension>,
        identifier: Vec<Identifier>,
        based_on: Vec<Reference>,
        part_of: Vec<Reference>,
        status: Option<String>,
        category: Vec<CodeableConcept>,
        code: Option<CodeableConcept>,
        subject: Option<Reference>,
        focus: Vec<Reference>,
        encounter: Option<Reference>,
        effective_date_time: Option<String>,
        effective_period: Option<Period>,
        effective_instant: Option<String>,
        effective_timing: Option<Value>,
        issued: Option<String>,
        performer: Vec<Reference>,
        value_quantity: Option<Quantity>,
        value_codeable_concept: Option<CodeableConcept>,
        value_string: Option<String>,
        value_boolean: Option<bool>,
        value_integer: Option<i64>,
        value_range: Option<Range>,
        value_ratio: Option<Ratio>,
        value_time: Option<String>,
        value_date_time: Option<String>,
        value_period: Option<Period>,
        data_absent_reason: Option<CodeableConcept>,
        interpretation: Vec<CodeableConcept>,
        note: Vec<Annotation>,
        body_site: Option<CodeableConcept>,
        method: Option<CodeableConcept>,
        specimen: Option<Reference>,
        device: Option<Reference>,
        reference_range: Vec<ObservationReferenceRange>,
        has_member: Vec<Reference>,
        derived_from: Vec<Reference>,
        component: Vec<ObservationComponent>,
    }
);

fhir_element!(
    /// Who performed a procedure.
    ProcedurePerformer {
        function: Option<CodeableConcept>,
        actor: Option<Reference>,
        on_behalf_of: Option<Reference>,
    }
);

fhir_element!(
    /// An action performed on or for a patient.
    Procedure {
        id: Option<String>,
        meta: Option<Meta>,
        extension: Vec<Extension>,
        identifier: Vec<Identifier>,
        based_on: Vec<Reference>,
        part_of: Vec<Reference>,
        status: Option<String>,
        status_reason: Option<CodeableConcept>,
        category: Option<CodeableConcept>,
        code: Option<CodeableConcept>,
        subject: Option<Reference>,
        encounter: Option<Reference>,
        performed_date_time: Option<String>,
        performed_period: Option<Period>,
        performed_string: Option<String>,
        performed_age: Option<Quantity>,
        performed_range: Option<Range>,
        recorder: Option<Reference>,
        asserter: Option<Reference>,
        performer: Vec<ProcedurePerformer>,
        location: Option<Reference>,
        reason_code: Vec<CodeableConcept>,
        reason_reference: Vec<Reference>,
        body_site: Vec<CodeableConcept>,
        outcome: Option<CodeableConcept>,
        note: Vec<Annotation>,
    }
);

fhir_element!(
    /// An order for a medication.
    MedicationRequest {
        id: Option<String>,
        meta: Option<Meta>,
        extension: Vec<Extension>,
        identifier: Vec<Identifier>,
        status: Option<String>,
        status_reason: Option<CodeableConcept>,
        intent: Option<String>,
        category: Vec<CodeableConcept>,
        priority: Option<String>,
        do_not_perform: Option<bool>,
        reported_boolean: Option<bool>,
        reported_reference: Option<Reference>,
        medication_codeable_concept: Option<CodeableConcept>,
        medication_reference: Option<Reference>,
        subject: Option<Reference>,
        encounter: Option<Reference>,
        authored_on: Option<String>,
        requester: Option<Reference>,
        reason_code: Vec<CodeableConcept>,
        reason_reference: Vec<Reference>,
        note: Vec<Annotation>,
        dosage_instruction: Vec<Dosage>,
        dispense_request: Option<Value>,
        substitution: Option<Value>,
    }
);

fhir_element!(
    /// Who administered an immunization.
    ImmunizationPerformer {
        function: Option<CodeableConcept>,
        actor: Option<Reference>,
    }
);

fhir_element!(
    /// A vaccine administration.
    Immunization {
        id: Option<String>,
        meta: Option<Meta>,
        extension: Vec<Extension>,
        identifier: Vec<Identifier>,
        status: Option<String>,
        status_reason: Option<CodeableConcept>,
        vaccine_code: Option<CodeableConcept>,
        patient: Option<Reference>,
        encounter: Option<Reference>,
        occurrence_date_time: Option<String>,
        occurrence_string: Option<String>,
        recorded: Option<String>,
        primary_source: Option<bool>,
        location: Option<Reference>,
        manufacturer: Option<Reference>,
        lot_number: Option<String>,
        site: Option<CodeableConcept>,
        route: Option<CodeableConcept>,
        performer: Vec<ImmunizationPerformer>,
        reason_code: Vec<CodeableConcept>,
    }
);

fhir_element!(
    /// A plan/group/class of a coverage.
    CoverageClass {
        r#type: Option<CodeableConcept>,
        value: Option<String>,
        name: Option<String>,
    }
);

fhir_element!(
    /// Insurance coverage.
    Coverage {
        id: Option<String>,
        meta: Option<Meta>,
        extension: Vec<Extension>,
        identifier: Vec<Identifier>,
        status: Option<String>,
        r#type: Option<CodeableConcept>,
        policy_holder: Option<Reference>,
        subscriber: Option<Reference>,
        subscriber_id: Option<String>,
        beneficiary: Option<Reference>,
        dependent: Option<String>,
        relationship: Option<CodeableConcept>,
        period: Option<Period>,
        payor: Vec<Reference>,
        class: Vec<CoverageClass>,
        order: Option<u32>,
        network: Option<String>,
    }
);

impl Patient {
    /// The birth date when it has full day precision and is valid.
    pub fn birth_date_value(&self) -> Option<crate::Date> {
        self.birth_date.as_deref()?.parse().ok()
    }

    /// Completed years of age on `on`; `None` without a full, valid birth date.
    pub fn age_on(&self, on: crate::Date) -> Option<i32> {
        Some(crate::age_in_years(self.birth_date_value()?, on))
    }
}
