//! Codes used by the generator, each tied to the CMS eCQM value set it was
//! taken from (OID) so the measures find them. Codes with `value_set: None`
//! are referenced directly by the measures' CQL or are not measure-relevant.
//! The app and EDW run without `shared/`, so the table is embedded here.

/// One code of a code system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Code {
    pub system: &'static str,
    pub code: &'static str,
    pub display: &'static str,
}

/// A clinical concept with the codes the generator may emit for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Concept {
    /// The value set's title, or a note on where the codes come from.
    pub name: &'static str,
    /// The value set OID (`http://cts.nlm.nih.gov/fhir/ValueSet/<oid>`) every
    /// code must belong to.
    pub value_set: Option<&'static str>,
    pub codes: &'static [Code],
}

pub const CPT: &str = "http://www.ama-assn.org/go/cpt";
pub const SNOMED: &str = "http://snomed.info/sct";
pub const ICD10CM: &str = "http://hl7.org/fhir/sid/icd-10-cm";
pub const LOINC: &str = "http://loinc.org";
pub const RXNORM: &str = "http://www.nlm.nih.gov/research/umls/rxnorm";
pub const HCPCS: &str = "http://www.nlm.nih.gov/research/umls/hcpcs";
pub const SOPT: &str = "https://nahdo.org/sopt";
pub const CDCREC: &str = "urn:oid:2.16.840.1.113883.6.238";
pub const CVX: &str = "http://hl7.org/fhir/sid/cvx";
pub const UCUM: &str = "http://unitsofmeasure.org";

/// Vaccines (CVX; no eCQM among the twelve uses them).
pub const CVX_FLU_QUADRIVALENT: Code = Code {
    system: CVX,
    code: "150",
    display: "Influenza, injectable, quadrivalent, preservative free",
};
pub const CVX_FLU_HIGH_DOSE: Code = Code {
    system: CVX,
    code: "197",
    display: "Influenza, high-dose, quadrivalent",
};
pub const CVX_TDAP: Code = Code {
    system: CVX,
    code: "115",
    display: "Tdap",
};
pub const CVX_PCV20: Code = Code {
    system: CVX,
    code: "216",
    display: "Pneumococcal conjugate PCV20, polysaccharide CRM197 conjugate, adjuvant, PF",
};
pub const CVX_ZOSTER: Code = Code {
    system: CVX,
    code: "187",
    display: "Zoster vaccine recombinant",
};
pub const CVX_MMR: Code = Code {
    system: CVX,
    code: "03",
    display: "MMR",
};
pub const CVX_DTAP: Code = Code {
    system: CVX,
    code: "20",
    display: "DTaP",
};

// Generated from the CMS eCQM 2024 value-set expansions in shared/ecqm/measures
// (displays copied from the expansions); checked by tests/value_sets.rs.
/// Office Visit
pub const OFFICE_VISIT: Concept = Concept {
    name: "Office Visit",
    value_set: Some("2.16.840.1.113883.3.464.1003.101.12.1001"),
    codes: &[
        Code { system: CPT, code: "99213", display: "Office or other outpatient visit for the evaluation and management of an established patient, which requires a medically appropriate history and/or examination and low level of medical decision making. When using total time on the date of the encounter for code selection, 20 minutes must be met or exceeded." },
        Code { system: CPT, code: "99214", display: "Office or other outpatient visit for the evaluation and management of an established patient, which requires a medically appropriate history and/or examination and moderate level of medical decision making. When using total time on the date of the encounter for code selection, 30 minutes must be met or exceeded." },
        Code { system: CPT, code: "99212", display: "Office or other outpatient visit for the evaluation and management of an established patient, which requires a medically appropriate history and/or examination and straightforward medical decision making. When using total time on the date of the encounter for code selection, 10 minutes must be met or exceeded." },
        Code { system: CPT, code: "99203", display: "Office or other outpatient visit for the evaluation and management of a new patient, which requires a medically appropriate history and/or examination and low level of medical decision making. When using total time on the date of the encounter for code selection, 30 minutes must be met or exceeded." },
    ],
};

/// Annual Wellness Visit
pub const ANNUAL_WELLNESS: Concept = Concept {
    name: "Annual Wellness Visit",
    value_set: Some("2.16.840.1.113883.3.526.3.1240"),
    codes: &[
        Code { system: HCPCS, code: "G0438", display: "Annual wellness visit; includes a personalized prevention plan of service (pps), initial visit" },
        Code { system: HCPCS, code: "G0439", display: "Annual wellness visit, includes a personalized prevention plan of service (pps), subsequent visit" },
    ],
};

/// Preventive Care Services Established Office Visit, 18 and Up
pub const PREVENTIVE_ADULT: Concept = Concept {
    name: "Preventive Care Services Established Office Visit, 18 and Up",
    value_set: Some("2.16.840.1.113883.3.464.1003.101.12.1025"),
    codes: &[
        Code { system: CPT, code: "99395", display: "Periodic comprehensive preventive medicine reevaluation and management of an individual including an age and gender appropriate history, examination, counseling/anticipatory guidance/risk factor reduction interventions, and the ordering of laboratory/diagnostic procedures, established patient; 18-39 years" },
        Code { system: CPT, code: "99396", display: "Periodic comprehensive preventive medicine reevaluation and management of an individual including an age and gender appropriate history, examination, counseling/anticipatory guidance/risk factor reduction interventions, and the ordering of laboratory/diagnostic procedures, established patient; 40-64 years" },
        Code { system: CPT, code: "99397", display: "Periodic comprehensive preventive medicine reevaluation and management of an individual including an age and gender appropriate history, examination, counseling/anticipatory guidance/risk factor reduction interventions, and the ordering of laboratory/diagnostic procedures, established patient; 65 years and older" },
    ],
};

/// Preventive Care, Established Office Visit, 0 to 17
pub const PREVENTIVE_CHILD: Concept = Concept {
    name: "Preventive Care, Established Office Visit, 0 to 17",
    value_set: Some("2.16.840.1.113883.3.464.1003.101.12.1024"),
    codes: &[
        Code { system: CPT, code: "99391", display: "Periodic comprehensive preventive medicine reevaluation and management of an individual including an age and gender appropriate history, examination, counseling/anticipatory guidance/risk factor reduction interventions, and the ordering of laboratory/diagnostic procedures, established patient; infant (age younger than 1 year)" },
        Code { system: CPT, code: "99392", display: "Periodic comprehensive preventive medicine reevaluation and management of an individual including an age and gender appropriate history, examination, counseling/anticipatory guidance/risk factor reduction interventions, and the ordering of laboratory/diagnostic procedures, established patient; early childhood (age 1 through 4 years)" },
        Code { system: CPT, code: "99393", display: "Periodic comprehensive preventive medicine reevaluation and management of an individual including an age and gender appropriate history, examination, counseling/anticipatory guidance/risk factor reduction interventions, and the ordering of laboratory/diagnostic procedures, established patient; late childhood (age 5 through 11 years)" },
        Code { system: CPT, code: "99394", display: "Periodic comprehensive preventive medicine reevaluation and management of an individual including an age and gender appropriate history, examination, counseling/anticipatory guidance/risk factor reduction interventions, and the ordering of laboratory/diagnostic procedures, established patient; adolescent (age 12 through 17 years)" },
    ],
};

/// Telephone Visits
pub const TELEPHONE_VISIT: Concept = Concept {
    name: "Telephone Visits",
    value_set: Some("2.16.840.1.113883.3.464.1003.101.12.1080"),
    codes: &[
        Code { system: CPT, code: "99442", display: "Telephone evaluation and management service by a physician or other qualified health care professional who may report evaluation and management services provided to an established patient, parent, or guardian not originating from a related E/M service provided within the previous 7 days nor leading to an E/M service or procedure within the next 24 hours or soonest available appointment; 11-20 minutes of medical discussion" },
        Code { system: SNOMED, code: "185317003", display: "Telephone encounter (procedure)" },
    ],
};

/// Virtual Encounter
pub const VIRTUAL_VISIT: Concept = Concept {
    name: "Virtual Encounter",
    value_set: Some("2.16.840.1.113883.3.464.1003.101.12.1089"),
    codes: &[
        Code { system: CPT, code: "99422", display: "Online digital evaluation and management service, for an established patient, for up to 7 days, cumulative time during the 7 days; 11-20 minutes" },
        Code { system: HCPCS, code: "G2012", display: "Brief communication technology-based service, e.g. virtual check-in, by a physician or other qualified health care professional who can report evaluation and management services, provided to an established patient, not originating from a related e/m service provided within the previous 7 days nor leading to an e/m service or procedure within the next 24 hours or soonest available appointment; 5-10 minutes of medical discussion" },
    ],
};

/// Emergency Department Evaluation and Management Visit
pub const ED_VISIT: Concept = Concept {
    name: "Emergency Department Evaluation and Management Visit",
    value_set: Some("2.16.840.1.113883.3.464.1003.101.12.1010"),
    codes: &[
        Code { system: CPT, code: "99283", display: "Emergency department visit for the evaluation and management of a patient, which requires a medically appropriate history and/or examination and low level of medical decision making" },
        Code { system: CPT, code: "99284", display: "Emergency department visit for the evaluation and management of a patient, which requires a medically appropriate history and/or examination and moderate level of medical decision making" },
    ],
};

/// Encounter Inpatient
pub const INPATIENT_ADMISSION: Concept = Concept {
    name: "Encounter Inpatient",
    value_set: Some("2.16.840.1.113883.3.666.5.307"),
    codes: &[
        Code {
            system: SNOMED,
            code: "32485007",
            display: "Hospital admission (procedure)",
        },
        Code {
            system: SNOMED,
            code: "183452005",
            display: "Emergency hospital admission (procedure)",
        },
    ],
};

/// Essential Hypertension
pub const ESSENTIAL_HYPERTENSION: Concept = Concept {
    name: "Essential Hypertension",
    value_set: Some("2.16.840.1.113883.3.464.1003.104.12.1011"),
    codes: &[
        Code {
            system: ICD10CM,
            code: "I10",
            display: "Essential (primary) hypertension",
        },
        Code {
            system: SNOMED,
            code: "59621000",
            display: "Essential hypertension (disorder)",
        },
    ],
};

/// Diabetes
pub const DIABETES_TYPE_2: Concept = Concept {
    name: "Diabetes",
    value_set: Some("2.16.840.1.113883.3.464.1003.103.12.1001"),
    codes: &[
        Code {
            system: ICD10CM,
            code: "E11.9",
            display: "Type 2 diabetes mellitus without complications",
        },
        Code {
            system: SNOMED,
            code: "44054006",
            display: "Diabetes mellitus type 2 (disorder)",
        },
    ],
};

/// Diabetes
pub const DIABETES_TYPE_1: Concept = Concept {
    name: "Diabetes",
    value_set: Some("2.16.840.1.113883.3.464.1003.103.12.1001"),
    codes: &[
        Code {
            system: ICD10CM,
            code: "E10.9",
            display: "Type 1 diabetes mellitus without complications",
        },
        Code {
            system: SNOMED,
            code: "46635009",
            display: "Diabetes mellitus type 1 (disorder)",
        },
    ],
};

/// Atherosclerosis and Peripheral Arterial Disease
pub const CORONARY_ATHEROSCLEROSIS: Concept = Concept {
    name: "Atherosclerosis and Peripheral Arterial Disease",
    value_set: Some("2.16.840.1.113762.1.4.1047.21"),
    codes: &[Code {
        system: ICD10CM,
        code: "I25.10",
        display: "Atherosclerotic heart disease of native coronary artery without angina pectoris",
    }],
};

/// Initial Myocardial Infarction
pub const MYOCARDIAL_INFARCTION: Concept = Concept {
    name: "Initial Myocardial Infarction",
    value_set: Some("2.16.840.1.113883.3.526.3.403"),
    codes: &[
        Code {
            system: ICD10CM,
            code: "I21.9",
            display: "Acute myocardial infarction, unspecified",
        },
        Code {
            system: SNOMED,
            code: "22298006",
            display: "Myocardial infarction (disorder)",
        },
    ],
};

/// Cerebrovascular Disease Stroke or TIA
pub const STROKE: Concept = Concept {
    name: "Cerebrovascular Disease Stroke or TIA",
    value_set: Some("2.16.840.1.113762.1.4.1047.44"),
    codes: &[
        Code {
            system: ICD10CM,
            code: "I63.9",
            display: "Cerebral infarction, unspecified",
        },
        Code {
            system: SNOMED,
            code: "230690007",
            display: "Cerebrovascular accident (disorder)",
        },
    ],
};

/// Overweight or Obese
pub const OBESITY: Concept = Concept {
    name: "Overweight or Obese",
    value_set: Some("2.16.840.1.113762.1.4.1047.502"),
    codes: &[
        Code {
            system: ICD10CM,
            code: "E66.9",
            display: "Obesity, unspecified",
        },
        Code {
            system: SNOMED,
            code: "414916001",
            display: "Obesity (disorder)",
        },
    ],
};

/// Overweight or Obese (the overweight codes, for BMI 25–29.9)
pub const OVERWEIGHT: Concept = Concept {
    name: "Overweight or Obese",
    value_set: Some("2.16.840.1.113762.1.4.1047.502"),
    codes: &[
        Code {
            system: ICD10CM,
            code: "E66.3",
            display: "Overweight",
        },
        Code {
            system: SNOMED,
            code: "238131007",
            display: "Overweight (finding)",
        },
    ],
};

/// Mammography
pub const MAMMOGRAPHY: Concept = Concept {
    name: "Mammography",
    value_set: Some("2.16.840.1.113883.3.464.1003.108.12.1018"),
    codes: &[
        Code {
            system: LOINC,
            code: "24606-6",
            display: "MG Breast Screening",
        },
        Code {
            system: LOINC,
            code: "26175-0",
            display: "MG Breast - bilateral Screening",
        },
    ],
};

/// Colonoscopy
pub const COLONOSCOPY: Concept = Concept {
    name: "Colonoscopy",
    value_set: Some("2.16.840.1.113883.3.464.1003.108.12.1020"),
    codes: &[
        Code { system: CPT, code: "45378", display: "Colonoscopy, flexible; diagnostic, including collection of specimen(s) by brushing or washing, when performed (separate procedure)" },
        Code { system: SNOMED, code: "73761001", display: "Colonoscopy (procedure)" },
    ],
};

/// Fecal Occult Blood Test (FOBT)
pub const FOBT: Concept = Concept {
    name: "Fecal Occult Blood Test (FOBT)",
    value_set: Some("2.16.840.1.113883.3.464.1003.198.12.1011"),
    codes: &[Code {
        system: LOINC,
        code: "29771-3",
        display: "Hemoglobin.gastrointestinal.lower [Presence] in Stool by Immunoassay",
    }],
};

/// sDNA FIT Test
pub const SDNA_FIT: Concept = Concept {
    name: "sDNA FIT Test",
    value_set: Some("2.16.840.1.113883.3.464.1003.108.12.1039"),
    codes: &[Code {
        system: LOINC,
        code: "77354-9",
        display: "Noninvasive colorectal cancer DNA and occult blood screening [Presence] in Stool",
    }],
};

/// Pap Test
pub const PAP_TEST: Concept = Concept {
    name: "Pap Test",
    value_set: Some("2.16.840.1.113883.3.464.1003.108.12.1017"),
    codes: &[
        Code {
            system: LOINC,
            code: "10524-7",
            display: "Microscopic observation [Identifier] in Cervix by Cyto stain",
        },
        Code {
            system: LOINC,
            code: "33717-0",
            display: "Cervical AndOr vaginal cytology study",
        },
    ],
};

/// HPV Test
pub const HPV_TEST: Concept = Concept {
    name: "HPV Test",
    value_set: Some("2.16.840.1.113883.3.464.1003.110.12.1059"),
    codes: &[
        Code { system: LOINC, code: "21440-3", display: "Human papilloma virus 16+18+31+33+35+45+51+52+56 DNA [Presence] in Cervix by Probe" },
        Code { system: LOINC, code: "30167-1", display: "Human papilloma virus 16+18+31+33+35+39+45+51+52+56+58+59+68 DNA [Presence] in Cervix by Probe with signal amplification" },
    ],
};

/// Hysterectomy with No Residual Cervix
pub const HYSTERECTOMY_NO_CERVIX: Concept = Concept {
    name: "Hysterectomy with No Residual Cervix",
    value_set: Some("2.16.840.1.113883.3.464.1003.198.12.1014"),
    codes: &[Code {
        system: SNOMED,
        code: "116140006",
        display: "Total hysterectomy (procedure)",
    }],
};

/// Bilateral Mastectomy
pub const BILATERAL_MASTECTOMY: Concept = Concept {
    name: "Bilateral Mastectomy",
    value_set: Some("2.16.840.1.113883.3.464.1003.198.12.1005"),
    codes: &[Code {
        system: SNOMED,
        code: "52314009",
        display: "Extended simple mastectomy of bilateral breasts (procedure)",
    }],
};

/// Retinal or Dilated Eye Exam
pub const RETINAL_EYE_EXAM: Concept = Concept {
    name: "Retinal or Dilated Eye Exam",
    value_set: Some("2.16.840.1.113883.3.464.1003.115.12.1088"),
    codes: &[
        Code {
            system: SNOMED,
            code: "722161008",
            display: "Diabetic retinal eye exam (procedure)",
        },
        Code {
            system: SNOMED,
            code: "314971001",
            display: "Camera fundoscopy (procedure)",
        },
    ],
};

/// HbA1c Laboratory Test
pub const HBA1C: Concept = Concept {
    name: "HbA1c Laboratory Test",
    value_set: Some("2.16.840.1.113883.3.464.1003.198.12.1013"),
    codes: &[Code {
        system: LOINC,
        code: "4548-4",
        display: "Hemoglobin A1c/Hemoglobin.total in Blood",
    }],
};

/// Estimated Glomerular Filtration Rate
pub const EGFR: Concept = Concept {
    name: "Estimated Glomerular Filtration Rate",
    value_set: Some("2.16.840.1.113883.3.6929.3.1000"),
    codes: &[
        Code { system: LOINC, code: "98979-8", display: "Glomerular filtration rate/1.73 sq M.predicted [Volume Rate/Area] in Serum, Plasma or Blood by Creatinine-based formula (CKD-EPI 2021)" },
    ],
};

/// Urine Albumin Creatinine Ratio
pub const UACR: Concept = Concept {
    name: "Urine Albumin Creatinine Ratio",
    value_set: Some("2.16.840.1.113883.3.6929.3.1007"),
    codes: &[Code {
        system: LOINC,
        code: "9318-7",
        display: "Albumin/Creatinine [Mass Ratio] in Urine",
    }],
};

/// LDL Cholesterol
pub const LDL_CHOLESTEROL: Concept = Concept {
    name: "LDL Cholesterol",
    value_set: Some("2.16.840.1.113883.3.526.3.1573"),
    codes: &[Code {
        system: LOINC,
        code: "13457-7",
        display: "Cholesterol in LDL [Mass/volume] in Serum or Plasma by calculation",
    }],
};

/// Tobacco Use Screening
pub const TOBACCO_SCREENING: Concept = Concept {
    name: "Tobacco Use Screening",
    value_set: Some("2.16.840.1.113883.3.526.3.1278"),
    codes: &[Code {
        system: LOINC,
        code: "72166-2",
        display: "Tobacco smoking status",
    }],
};

/// Tobacco User
pub const TOBACCO_USER: Concept = Concept {
    name: "Tobacco User",
    value_set: Some("2.16.840.1.113883.3.526.3.1170"),
    codes: &[
        Code {
            system: SNOMED,
            code: "77176002",
            display: "Smoker (finding)",
        },
        Code {
            system: SNOMED,
            code: "449868002",
            display: "Smokes tobacco daily (finding)",
        },
        Code {
            system: SNOMED,
            code: "65568007",
            display: "Cigarette smoker (finding)",
        },
    ],
};

/// Tobacco Non User
pub const TOBACCO_NON_USER: Concept = Concept {
    name: "Tobacco Non User",
    value_set: Some("2.16.840.1.113883.3.526.3.1189"),
    codes: &[
        Code {
            system: SNOMED,
            code: "266919005",
            display: "Never smoked tobacco (finding)",
        },
        Code {
            system: SNOMED,
            code: "8517006",
            display: "Ex-smoker (finding)",
        },
    ],
};

/// Tobacco Use Cessation Counseling
pub const TOBACCO_CESSATION_COUNSELING: Concept = Concept {
    name: "Tobacco Use Cessation Counseling",
    value_set: Some("2.16.840.1.113883.3.526.3.509"),
    codes: &[
        Code { system: CPT, code: "99406", display: "Smoking and tobacco use cessation counseling visit; intermediate, greater than 3 minutes up to 10 minutes" },
        Code { system: SNOMED, code: "225323000", display: "Smoking cessation education (procedure)" },
    ],
};

/// Falls Screening
pub const FALLS_SCREENING: Concept = Concept {
    name: "Falls Screening",
    value_set: Some("2.16.840.1.113883.3.464.1003.118.12.1028"),
    codes: &[Code {
        system: LOINC,
        code: "73830-2",
        display: "Fall risk assessment",
    }],
};

/// High Intensity Statin Therapy
pub const HIGH_INTENSITY_STATIN: Concept = Concept {
    name: "High Intensity Statin Therapy",
    value_set: Some("2.16.840.1.113883.3.526.3.1572"),
    codes: &[
        Code {
            system: RXNORM,
            code: "617311",
            display: "atorvastatin 40 MG Oral Tablet",
        },
        Code {
            system: RXNORM,
            code: "259255",
            display: "atorvastatin 80 MG Oral Tablet",
        },
        Code {
            system: RXNORM,
            code: "859751",
            display: "rosuvastatin calcium 20 MG Oral Tablet",
        },
    ],
};

/// Moderate Intensity Statin Therapy
pub const MODERATE_INTENSITY_STATIN: Concept = Concept {
    name: "Moderate Intensity Statin Therapy",
    value_set: Some("2.16.840.1.113883.3.526.3.1575"),
    codes: &[
        Code {
            system: RXNORM,
            code: "617310",
            display: "atorvastatin 20 MG Oral Tablet",
        },
        Code {
            system: RXNORM,
            code: "312961",
            display: "simvastatin 20 MG Oral Tablet",
        },
        Code {
            system: RXNORM,
            code: "904475",
            display: "pravastatin sodium 40 MG Oral Tablet",
        },
    ],
};

/// Adult Depression Medications
pub const DEPRESSION_MEDICATION: Concept = Concept {
    name: "Adult Depression Medications",
    value_set: Some("2.16.840.1.113883.3.526.3.1566"),
    codes: &[
        Code {
            system: RXNORM,
            code: "312941",
            display: "sertraline 50 MG Oral Tablet",
        },
        Code {
            system: RXNORM,
            code: "349332",
            display: "escitalopram 10 MG Oral Tablet",
        },
        Code {
            system: RXNORM,
            code: "248642",
            display: "fluoxetine 20 MG Oral Tablet",
        },
    ],
};

/// Follow Up for Adult Depression
pub const DEPRESSION_FOLLOW_UP: Concept = Concept {
    name: "Follow Up for Adult Depression",
    value_set: Some("2.16.840.1.113883.3.526.3.1568"),
    codes: &[Code {
        system: SNOMED,
        code: "768835002",
        display: "Depression care management (procedure)",
    }],
};

/// Follow Up for Above Normal BMI
pub const BMI_FOLLOW_UP: Concept = Concept {
    name: "Follow Up for Above Normal BMI",
    value_set: Some("2.16.840.1.113883.3.600.1.1525"),
    codes: &[
        Code {
            system: SNOMED,
            code: "304549008",
            display: "Giving encouragement to exercise (procedure)",
        },
        Code {
            system: SNOMED,
            code: "410177006",
            display: "Special diet education (procedure)",
        },
    ],
};

/// Hospice Care Ambulatory
pub const HOSPICE_CARE: Concept = Concept {
    name: "Hospice Care Ambulatory",
    value_set: Some("2.16.840.1.113883.3.526.3.1584"),
    codes: &[Code {
        system: SNOMED,
        code: "385763009",
        display: "Hospice care (regime/therapy)",
    }],
};

/// Payer Type
pub const PAYER_MEDICARE: Concept = Concept {
    name: "Payer Type",
    value_set: Some("2.16.840.1.114222.4.11.3591"),
    codes: &[Code {
        system: SOPT,
        code: "1",
        display: "MEDICARE",
    }],
};

/// Payer Type
pub const PAYER_MEDICAID: Concept = Concept {
    name: "Payer Type",
    value_set: Some("2.16.840.1.114222.4.11.3591"),
    codes: &[Code {
        system: SOPT,
        code: "2",
        display: "MEDICAID",
    }],
};

/// Payer Type
pub const PAYER_PRIVATE: Concept = Concept {
    name: "Payer Type",
    value_set: Some("2.16.840.1.114222.4.11.3591"),
    codes: &[
        Code {
            system: SOPT,
            code: "5",
            display: "PRIVATE HEALTH INSURANCE",
        },
        Code {
            system: SOPT,
            code: "6",
            display: "BLUE CROSS/BLUE SHIELD",
        },
    ],
};

/// Race
pub const RACE: Concept = Concept {
    name: "Race",
    value_set: Some("2.16.840.1.114222.4.11.836"),
    codes: &[
        Code {
            system: CDCREC,
            code: "2106-3",
            display: "White",
        },
        Code {
            system: CDCREC,
            code: "2054-5",
            display: "Black or African American",
        },
        Code {
            system: CDCREC,
            code: "2028-9",
            display: "Asian",
        },
        Code {
            system: CDCREC,
            code: "1002-5",
            display: "American Indian or Alaska Native",
        },
        Code {
            system: CDCREC,
            code: "2076-8",
            display: "Native Hawaiian or Other Pacific Islander",
        },
        Code {
            system: CDCREC,
            code: "2131-1",
            display: "Other Race",
        },
    ],
};

/// Ethnicity
pub const ETHNICITY: Concept = Concept {
    name: "Ethnicity",
    value_set: Some("2.16.840.1.114222.4.11.837"),
    codes: &[
        Code {
            system: CDCREC,
            code: "2135-2",
            display: "Hispanic or Latino",
        },
        Code {
            system: CDCREC,
            code: "2186-5",
            display: "Not Hispanic or Latino",
        },
    ],
};

/// blood pressure profile (QI-Core/US Core vital sign)
pub const BP_PANEL: Concept = Concept {
    name: "blood pressure profile (QI-Core/US Core vital sign)",
    value_set: None,
    codes: &[Code {
        system: LOINC,
        code: "85354-9",
        display: "Blood pressure panel with all children optional",
    }],
};

/// direct code in ControllingHighBloodPressureFHIR
pub const SYSTOLIC_BP: Concept = Concept {
    name: "direct code in ControllingHighBloodPressureFHIR",
    value_set: None,
    codes: &[Code {
        system: LOINC,
        code: "8480-6",
        display: "Systolic blood pressure",
    }],
};

/// direct code in ControllingHighBloodPressureFHIR
pub const DIASTOLIC_BP: Concept = Concept {
    name: "direct code in ControllingHighBloodPressureFHIR",
    value_set: None,
    codes: &[Code {
        system: LOINC,
        code: "8462-4",
        display: "Diastolic blood pressure",
    }],
};

/// direct code in PCSBMIScreenAndFollowUpFHIR
pub const BMI: Concept = Concept {
    name: "direct code in PCSBMIScreenAndFollowUpFHIR",
    value_set: None,
    codes: &[Code {
        system: LOINC,
        code: "39156-5",
        display: "Body mass index (BMI) [Ratio]",
    }],
};

/// US Core body weight profile
pub const BODY_WEIGHT: Concept = Concept {
    name: "US Core body weight profile",
    value_set: None,
    codes: &[Code {
        system: LOINC,
        code: "29463-7",
        display: "Body weight",
    }],
};

/// US Core body height profile
pub const BODY_HEIGHT: Concept = Concept {
    name: "US Core body height profile",
    value_set: None,
    codes: &[Code {
        system: LOINC,
        code: "8302-2",
        display: "Body height",
    }],
};

/// direct code in PCSDepressionScreenAndFollowUpFHIR
pub const ADULT_DEPRESSION_SCREENING: Concept = Concept {
    name: "direct code in PCSDepressionScreenAndFollowUpFHIR",
    value_set: None,
    codes: &[Code {
        system: LOINC,
        code: "73832-8",
        display: "Adult depression screening assessment",
    }],
};

/// direct code in PCSDepressionScreenAndFollowUpFHIR
pub const ADOLESCENT_DEPRESSION_SCREENING: Concept = Concept {
    name: "direct code in PCSDepressionScreenAndFollowUpFHIR",
    value_set: None,
    codes: &[Code {
        system: LOINC,
        code: "73831-0",
        display: "Adolescent depression screening assessment",
    }],
};

/// direct code in PCSDepressionScreenAndFollowUpFHIR
pub const DEPRESSION_SCREEN_NEGATIVE: Concept = Concept {
    name: "direct code in PCSDepressionScreenAndFollowUpFHIR",
    value_set: None,
    codes: &[Code {
        system: SNOMED,
        code: "428171000124102",
        display: "Depression screening negative (finding)",
    }],
};

/// direct code in PCSDepressionScreenAndFollowUpFHIR
pub const DEPRESSION_SCREEN_POSITIVE: Concept = Concept {
    name: "direct code in PCSDepressionScreenAndFollowUpFHIR",
    value_set: None,
    codes: &[Code {
        system: SNOMED,
        code: "428181000124104",
        display: "Depression screening positive (finding)",
    }],
};

/// not used by the measures (PHQ-9 score detail)
pub const PHQ9_TOTAL: Concept = Concept {
    name: "not used by the measures (PHQ-9 score detail)",
    value_set: None,
    codes: &[Code {
        system: LOINC,
        code: "44261-6",
        display: "Patient Health Questionnaire 9 item (PHQ-9) total score [Reported]",
    }],
};

/// direct code in StatinTherapyforthePreventionandTreatmentofCardiovascularDiseaseFHIR
pub const CVD_10Y_RISK: Concept = Concept {
    name: "direct code in StatinTherapyforthePreventionandTreatmentofCardiovascularDiseaseFHIR",
    value_set: None,
    codes: &[Code {
        system: LOINC,
        code: "79423-0",
        display: "Cardiovascular disease 10Y risk [Likelihood] ACC-AHA Pooled Cohort by Goff 2013",
    }],
};

/// not in a measure value set
pub const HYPERLIPIDEMIA: Concept = Concept {
    name: "not in a measure value set",
    value_set: None,
    codes: &[
        Code {
            system: ICD10CM,
            code: "E78.5",
            display: "Hyperlipidemia, unspecified",
        },
        Code {
            system: SNOMED,
            code: "55822004",
            display: "Hyperlipidemia (disorder)",
        },
    ],
};

/// not in a measure value set
pub const DEPRESSION: Concept = Concept {
    name: "not in a measure value set",
    value_set: None,
    codes: &[
        Code {
            system: ICD10CM,
            code: "F32.A",
            display: "Depression, unspecified",
        },
        Code {
            system: SNOMED,
            code: "35489007",
            display: "Depressive disorder (disorder)",
        },
    ],
};

/// not in a measure value set (stage 5 is an exclusion)
pub const CKD_STAGE_3: Concept = Concept {
    name: "not in a measure value set (stage 5 is an exclusion)",
    value_set: None,
    codes: &[
        Code {
            system: ICD10CM,
            code: "N18.30",
            display: "Chronic kidney disease, stage 3 unspecified",
        },
        Code {
            system: SNOMED,
            code: "433144002",
            display: "Chronic kidney disease stage 3 (disorder)",
        },
    ],
};

/// not in a measure value set
pub const ANTIHYPERTENSIVE: Concept = Concept {
    name: "not in a measure value set",
    value_set: None,
    codes: &[
        Code {
            system: RXNORM,
            code: "314076",
            display: "lisinopril 10 MG Oral Tablet",
        },
        Code {
            system: RXNORM,
            code: "197361",
            display: "amlodipine 5 MG Oral Tablet",
        },
        Code {
            system: RXNORM,
            code: "310798",
            display: "hydrochlorothiazide 25 MG Oral Tablet",
        },
        Code {
            system: RXNORM,
            code: "979485",
            display: "losartan potassium 50 MG Oral Tablet",
        },
    ],
};

/// not in a measure value set
pub const METFORMIN: Concept = Concept {
    name: "not in a measure value set",
    value_set: None,
    codes: &[Code {
        system: RXNORM,
        code: "861007",
        display: "metformin hydrochloride 500 MG Oral Tablet",
    }],
};

// ---- Codes of the resource types added later (ServiceRequest, DeviceRequest,
// AllergyIntolerance, AdverseEvent, MedicationDispense, DiagnosticReport); the
// value-set codes are copied from the same expansions as above.

/// Palliative Care Intervention (also the code of palliative care orders)
pub const PALLIATIVE_CARE_INTERVENTION: Concept = Concept {
    name: "Palliative Care Intervention",
    value_set: Some("2.16.840.1.113883.3.464.1003.198.12.1135"),
    codes: &[
        Code {
            system: SNOMED,
            code: "103735009",
            display: "Palliative care (regime/therapy)",
        },
        Code {
            system: SNOMED,
            code: "395695001",
            display: "Specialist palliative care treatment - outpatient (regime/therapy)",
        },
        Code {
            system: SNOMED,
            code: "443761007",
            display: "Anticipatory palliative care (regime/therapy)",
        },
    ],
};

/// Referral for Adult Depression
pub const REFERRAL_ADULT_DEPRESSION: Concept = Concept {
    name: "Referral for Adult Depression",
    value_set: Some("2.16.840.1.113883.3.526.3.1571"),
    codes: &[
        Code {
            system: SNOMED,
            code: "308459004",
            display: "Referral to psychologist (procedure)",
        },
        Code {
            system: SNOMED,
            code: "306226009",
            display: "Referral to mental health counseling service (procedure)",
        },
        Code {
            system: SNOMED,
            code: "308477009",
            display: "Referral to psychiatrist (procedure)",
        },
        Code {
            system: SNOMED,
            code: "390866009",
            display: "Referral to mental health team (procedure)",
        },
    ],
};

/// Referral for Adolescent Depression
pub const REFERRAL_ADOLESCENT_DEPRESSION: Concept = Concept {
    name: "Referral for Adolescent Depression",
    value_set: Some("2.16.840.1.113883.3.526.3.1570"),
    codes: &[
        Code {
            system: SNOMED,
            code: "306291008",
            display: "Referral to child and adolescent psychiatrist (procedure)",
        },
        Code {
            system: SNOMED,
            code: "309627007",
            display: "Child referral - clinical psychologist (procedure)",
        },
        Code {
            system: SNOMED,
            code: "306226009",
            display: "Referral to mental health counseling service (procedure)",
        },
    ],
};

/// Referrals Where Weight Assessment May Occur
pub const WEIGHT_REFERRAL: Concept = Concept {
    name: "Referrals Where Weight Assessment May Occur",
    value_set: Some("2.16.840.1.113883.3.600.1.1527"),
    codes: &[
        Code {
            system: SNOMED,
            code: "103699006",
            display: "Referral to dietitian (procedure)",
        },
        Code {
            system: SNOMED,
            code: "408289007",
            display: "Refer to weight management program (procedure)",
        },
        Code {
            system: SNOMED,
            code: "390893007",
            display: "Referral to physical activity program (procedure)",
        },
        Code {
            system: SNOMED,
            code: "306163007",
            display: "Referral to dietetics service (procedure)",
        },
    ],
};

/// Follow Up for Above Normal BMI (codes that are ordered, not performed at the visit)
pub const ABOVE_NORMAL_BMI_ORDER: Concept = Concept {
    name: "Follow Up for Above Normal BMI",
    value_set: Some("2.16.840.1.113883.3.600.1.1525"),
    codes: &[
        Code {
            system: CPT,
            code: "97802",
            display: "Medical nutrition therapy; initial assessment and intervention, individual, face-to-face with the patient, each 15 minutes",
        },
        Code {
            system: HCPCS,
            code: "G0447",
            display: "Face-to-face behavioral counseling for obesity, 15 minutes",
        },
    ],
};

/// Follow Up for Below Normal BMI
pub const BELOW_NORMAL_BMI_ORDER: Concept = Concept {
    name: "Follow Up for Below Normal BMI",
    value_set: Some("2.16.840.1.113883.3.600.1.1528"),
    codes: &[
        Code {
            system: CPT,
            code: "97802",
            display: "Medical nutrition therapy; initial assessment and intervention, individual, face-to-face with the patient, each 15 minutes",
        },
        Code {
            system: SNOMED,
            code: "429095004",
            display: "Dietary education for weight gain (procedure)",
        },
    ],
};

/// Underweight (the reason of a below-normal-BMI follow-up)
pub const UNDERWEIGHT: Concept = Concept {
    name: "Underweight",
    value_set: Some("2.16.840.1.113883.3.526.3.1563"),
    codes: &[
        Code {
            system: ICD10CM,
            code: "R63.6",
            display: "Underweight",
        },
        Code {
            system: SNOMED,
            code: "248342006",
            display: "Underweight (finding)",
        },
    ],
};

/// Frailty Device (walkers first: the most often ordered)
pub const FRAILTY_DEVICE: Concept = Concept {
    name: "Frailty Device",
    value_set: Some("2.16.840.1.113883.3.464.1003.118.12.1300"),
    codes: &[
        Code {
            system: SNOMED,
            code: "1255320005",
            display: "Wheeled walker (physical object)",
        },
        Code {
            system: SNOMED,
            code: "266731002",
            display: "Walking frame (physical object)",
        },
        Code {
            system: SNOMED,
            code: "87405001",
            display: "Cane, device (physical object)",
        },
        Code {
            system: SNOMED,
            code: "58938008",
            display: "Wheelchair device (physical object)",
        },
        Code {
            system: SNOMED,
            code: "228869008",
            display: "Manual wheelchair (physical object)",
        },
        Code {
            system: SNOMED,
            code: "466786004",
            display: "Basic electric hospital bed (physical object)",
        },
        Code {
            system: SNOMED,
            code: "360008003",
            display: "Commode (physical object)",
        },
        Code {
            system: SNOMED,
            code: "261323006",
            display: "Portable oxygen cylinder (physical object)",
        },
    ],
};

/// Statin Allergen (ingredients; AllergyIntolerance.code and AdverseEvent.event)
pub const STATIN_ALLERGEN: Concept = Concept {
    name: "Statin Allergen",
    value_set: Some("2.16.840.1.113762.1.4.1110.42"),
    codes: &[
        Code {
            system: RXNORM,
            code: "83367",
            display: "atorvastatin",
        },
        Code {
            system: RXNORM,
            code: "301542",
            display: "rosuvastatin",
        },
        Code {
            system: RXNORM,
            code: "36567",
            display: "simvastatin",
        },
        Code {
            system: RXNORM,
            code: "42463",
            display: "pravastatin",
        },
        Code {
            system: RXNORM,
            code: "6472",
            display: "lovastatin",
        },
    ],
};

/// Statin Associated Muscle Symptoms (the reaction of a statin intolerance)
pub const STATIN_MUSCLE_SYMPTOMS: Concept = Concept {
    name: "Statin Associated Muscle Symptoms",
    value_set: Some("2.16.840.1.113762.1.4.1108.85"),
    codes: &[Code {
        system: SNOMED,
        code: "16462851000119106",
        display: "Myalgia caused by statin (finding)",
    }],
};

/// Common allergens (SNOMED CT substances; no measure uses them). Order:
/// penicillin, sulfamethoxazole, codeine, aspirin, peanut, egg, latex, grass
/// pollen, cat dander.
pub const COMMON_ALLERGENS: Concept = Concept {
    name: "Common allergens (SNOMED CT substances)",
    value_set: None,
    codes: &[
        Code {
            system: SNOMED,
            code: "764146007",
            display: "Penicillin (substance)",
        },
        Code {
            system: SNOMED,
            code: "387406002",
            display: "Sulfamethoxazole (substance)",
        },
        Code {
            system: SNOMED,
            code: "387494007",
            display: "Codeine (substance)",
        },
        Code {
            system: SNOMED,
            code: "387458008",
            display: "Aspirin (substance)",
        },
        Code {
            system: SNOMED,
            code: "762952008",
            display: "Peanut (substance)",
        },
        Code {
            system: SNOMED,
            code: "102263004",
            display: "Eggs (edible) (substance)",
        },
        Code {
            system: SNOMED,
            code: "111088007",
            display: "Latex (substance)",
        },
        Code {
            system: SNOMED,
            code: "256277009",
            display: "Grass pollen (substance)",
        },
        Code {
            system: SNOMED,
            code: "260152009",
            display: "Cat dander (substance)",
        },
    ],
};

/// Allergy reaction manifestations (SNOMED CT findings). Order: rash, hives,
/// itching, anaphylaxis, nausea, sneezing, dyspnea.
pub const ALLERGY_MANIFESTATIONS: Concept = Concept {
    name: "Allergy reaction manifestations (SNOMED CT)",
    value_set: None,
    codes: &[
        Code {
            system: SNOMED,
            code: "271807003",
            display: "Eruption of skin (disorder)",
        },
        Code {
            system: SNOMED,
            code: "247472004",
            display: "Wheal (finding)",
        },
        Code {
            system: SNOMED,
            code: "418290006",
            display: "Itching (finding)",
        },
        Code {
            system: SNOMED,
            code: "39579001",
            display: "Anaphylaxis (disorder)",
        },
        Code {
            system: SNOMED,
            code: "422587007",
            display: "Nausea (finding)",
        },
        Code {
            system: SNOMED,
            code: "76067001",
            display: "Sneezing (finding)",
        },
        Code {
            system: SNOMED,
            code: "267036007",
            display: "Dyspnea (finding)",
        },
    ],
};

/// Laboratory report panels (LOINC; DiagnosticReport.code when the result is
/// one test of a panel). Order: lipid panel (calculated LDL), comprehensive
/// metabolic panel (eGFR).
pub const LAB_PANELS: Concept = Concept {
    name: "Laboratory report panels (LOINC)",
    value_set: None,
    codes: &[
        Code {
            system: LOINC,
            code: "24331-1",
            display: "Lipid 1996 panel - Serum or Plasma",
        },
        Code {
            system: LOINC,
            code: "24323-8",
            display: "Comprehensive metabolic 2000 panel - Serum or Plasma",
        },
    ],
};

/// Every concept above, for the value-set conformance test.
pub const ALL: &[&Concept] = &[
    &OFFICE_VISIT,
    &ANNUAL_WELLNESS,
    &PREVENTIVE_ADULT,
    &PREVENTIVE_CHILD,
    &TELEPHONE_VISIT,
    &VIRTUAL_VISIT,
    &ED_VISIT,
    &INPATIENT_ADMISSION,
    &ESSENTIAL_HYPERTENSION,
    &DIABETES_TYPE_2,
    &DIABETES_TYPE_1,
    &CORONARY_ATHEROSCLEROSIS,
    &MYOCARDIAL_INFARCTION,
    &STROKE,
    &OBESITY,
    &OVERWEIGHT,
    &MAMMOGRAPHY,
    &COLONOSCOPY,
    &FOBT,
    &SDNA_FIT,
    &PAP_TEST,
    &HPV_TEST,
    &HYSTERECTOMY_NO_CERVIX,
    &BILATERAL_MASTECTOMY,
    &RETINAL_EYE_EXAM,
    &HBA1C,
    &EGFR,
    &UACR,
    &LDL_CHOLESTEROL,
    &TOBACCO_SCREENING,
    &TOBACCO_USER,
    &TOBACCO_NON_USER,
    &TOBACCO_CESSATION_COUNSELING,
    &FALLS_SCREENING,
    &HIGH_INTENSITY_STATIN,
    &MODERATE_INTENSITY_STATIN,
    &DEPRESSION_MEDICATION,
    &DEPRESSION_FOLLOW_UP,
    &BMI_FOLLOW_UP,
    &HOSPICE_CARE,
    &PAYER_MEDICARE,
    &PAYER_MEDICAID,
    &PAYER_PRIVATE,
    &RACE,
    &ETHNICITY,
    &BP_PANEL,
    &SYSTOLIC_BP,
    &DIASTOLIC_BP,
    &BMI,
    &BODY_WEIGHT,
    &BODY_HEIGHT,
    &ADULT_DEPRESSION_SCREENING,
    &ADOLESCENT_DEPRESSION_SCREENING,
    &DEPRESSION_SCREEN_NEGATIVE,
    &DEPRESSION_SCREEN_POSITIVE,
    &PHQ9_TOTAL,
    &CVD_10Y_RISK,
    &HYPERLIPIDEMIA,
    &DEPRESSION,
    &CKD_STAGE_3,
    &ANTIHYPERTENSIVE,
    &METFORMIN,
    &PALLIATIVE_CARE_INTERVENTION,
    &REFERRAL_ADULT_DEPRESSION,
    &REFERRAL_ADOLESCENT_DEPRESSION,
    &WEIGHT_REFERRAL,
    &ABOVE_NORMAL_BMI_ORDER,
    &BELOW_NORMAL_BMI_ORDER,
    &UNDERWEIGHT,
    &FRAILTY_DEVICE,
    &STATIN_ALLERGEN,
    &STATIN_MUSCLE_SYMPTOMS,
    &COMMON_ALLERGENS,
    &ALLERGY_MANIFESTATIONS,
    &LAB_PANELS,
];
