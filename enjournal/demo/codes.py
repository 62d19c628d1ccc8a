"""Clinical codes for the demo population: conditions, medicines, observations, vaccines.

Code systems: ICD-10 (WHO), ICPC-2 (Volven 7170), ATC (WHOCC), LOINC and UCUM. Only a few
dozen well-known codes with short display texts are listed; this is not a terminology.
Prevalences and rates are rough figures chosen to look plausible, not epidemiology.
"""

from __future__ import annotations

from typing import NamedTuple

ICD10 = "http://hl7.org/fhir/sid/icd-10"
ICPC2 = "urn:oid:2.16.578.1.12.4.1.1.7170"
ATC = "http://www.whocc.no/atc"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
VOLVEN_HPR_CATEGORY = "urn:oid:2.16.578.1.12.4.1.1.9060"
VOLVEN_SPECIALITY = "urn:oid:2.16.578.1.12.4.1.1.7426"

Code = tuple[str, str]  # (code, display)


class Chronic(NamedTuple):
    key: str
    icpc2: Code
    icd10: Code
    #: (min age, probability male, probability female) steps; the last step <= age applies.
    prevalence: tuple[tuple[int, float, float], ...]
    medications: tuple[str, ...]  # MEDICATIONS keys; the first is first line
    visits_per_year: float  # extra GP follow-ups
    admissions_per_year: float  # extra hospital stays
    admission_icd10: Code  # the usual reason for a stay
    labs: tuple[str, ...]  # OBSERVATIONS keys measured at follow-ups


CHRONIC: tuple[Chronic, ...] = (
    Chronic(
        "hypertension",
        ("K86", "Hypertensjon ukomplisert"),
        ("I10", "Essensiell hypertensjon"),
        ((30, 0.04, 0.03), (40, 0.10, 0.08), (50, 0.20, 0.18), (60, 0.33, 0.32), (70, 0.48, 0.50)),
        ("amlodipine", "ramipril", "candesartan", "hydrochlorothiazide"),
        1.5,
        0.0,
        ("I10", "Essensiell hypertensjon"),
        ("creatinine",),
    ),
    Chronic(
        "diabetes2",
        ("T90", "Diabetes type 2"),
        ("E11.9", "Diabetes mellitus type 2 uten komplikasjoner"),
        ((30, 0.01, 0.01), (40, 0.04, 0.03), (55, 0.09, 0.06), (70, 0.13, 0.10)),
        ("metformin", "dapagliflozin", "liraglutide"),
        2.5,
        0.02,
        ("E11.9", "Diabetes mellitus type 2 uten komplikasjoner"),
        ("hba1c", "glucose", "cholesterol", "ldl", "creatinine"),
    ),
    Chronic(
        "asthma",
        ("R96", "Astma"),
        ("J45.9", "Astma, uspesifisert"),
        ((3, 0.08, 0.06), (18, 0.06, 0.08)),
        ("salbutamol", "budesonide_formoterol"),
        0.7,
        0.02,
        ("J45.9", "Astma, uspesifisert"),
        (),
    ),
    Chronic(
        "copd",
        ("R95", "Kronisk obstruktiv lungesykdom"),
        ("J44.9", "Kronisk obstruktiv lungesykdom, uspesifisert"),
        ((45, 0.03, 0.03), (60, 0.08, 0.07), (75, 0.12, 0.10)),
        ("tiotropium", "salbutamol"),
        1.5,
        0.25,
        ("J44.1", "Kronisk obstruktiv lungesykdom med akutt forverrelse"),
        (),
    ),
    Chronic(
        "hyperlipidemia",
        ("T93", "Lipidforstyrrelse"),
        ("E78.0", "Ren hyperkolesterolemi"),
        ((40, 0.06, 0.04), (55, 0.16, 0.14), (70, 0.22, 0.20)),
        ("atorvastatin", "simvastatin"),
        0.5,
        0.0,
        ("E78.0", "Ren hyperkolesterolemi"),
        ("cholesterol", "ldl"),
    ),
    Chronic(
        "depression",
        ("P76", "Depresjon"),
        ("F32.9", "Depressiv episode, uspesifisert"),
        ((15, 0.03, 0.06), (70, 0.03, 0.04)),
        ("sertraline", "escitalopram"),
        2.0,
        0.01,
        ("F32.2", "Alvorlig depressiv episode uten psykotiske symptomer"),
        (),
    ),
    Chronic(
        "anxiety",
        ("P74", "Angstlidelse"),
        ("F41.1", "Generalisert angstlidelse"),
        ((15, 0.02, 0.05),),
        ("escitalopram",),
        1.5,
        0.0,
        ("F41.1", "Generalisert angstlidelse"),
        (),
    ),
    Chronic(
        "hypothyroidism",
        ("T86", "Hypotyreose/myksødem"),
        ("E03.9", "Hypotyreose, uspesifisert"),
        ((20, 0.005, 0.03), (45, 0.01, 0.07), (65, 0.02, 0.10)),
        ("levothyroxine",),
        0.5,
        0.0,
        ("E03.9", "Hypotyreose, uspesifisert"),
        ("tsh",),
    ),
    Chronic(
        "atrial_fibrillation",
        ("K78", "Atrieflimmer/flutter"),
        ("I48.9", "Atrieflimmer og atrieflutter, uspesifisert"),
        ((50, 0.01, 0.005), (65, 0.06, 0.04), (75, 0.12, 0.09)),
        ("apixaban", "metoprolol"),
        1.0,
        0.12,
        ("I48.9", "Atrieflimmer og atrieflutter, uspesifisert"),
        ("creatinine", "hemoglobin"),
    ),
    Chronic(
        "heart_failure",
        ("K77", "Hjertesvikt"),
        ("I50.9", "Hjertesvikt, uspesifisert"),
        ((60, 0.01, 0.01), (75, 0.06, 0.05), (85, 0.12, 0.10)),
        ("furosemide", "bisoprolol", "ramipril"),
        2.0,
        0.35,
        ("I50.9", "Hjertesvikt, uspesifisert"),
        ("creatinine", "hemoglobin"),
    ),
    Chronic(
        "ihd",
        ("K76", "Iskemisk hjertesykdom uten angina"),
        ("I25.1", "Aterosklerotisk hjertesykdom"),
        ((50, 0.02, 0.01), (65, 0.08, 0.04), (75, 0.14, 0.08)),
        ("acetylsalicylic_acid", "atorvastatin", "metoprolol"),
        1.0,
        0.10,
        ("I21.9", "Akutt hjerteinfarkt, uspesifisert"),
        ("cholesterol", "ldl"),
    ),
    Chronic(
        "osteoarthritis",
        ("L90", "Kneartrose"),
        ("M17.9", "Kneartrose, uspesifisert"),
        ((45, 0.03, 0.04), (60, 0.09, 0.13), (75, 0.15, 0.20)),
        ("paracetamol",),
        0.8,
        0.03,
        ("M17.1", "Annen primær kneartrose"),
        (),
    ),
    Chronic(
        "migraine",
        ("N89", "Migrene"),
        ("G43.9", "Migrene, uspesifisert"),
        ((12, 0.03, 0.08), (55, 0.02, 0.04)),
        ("sumatriptan",),
        0.5,
        0.0,
        ("G43.9", "Migrene, uspesifisert"),
        (),
    ),
    Chronic(
        "allergic_rhinitis",
        ("R97", "Allergisk rhinitt"),
        ("J30.4", "Allergisk rhinitt, uspesifisert"),
        ((4, 0.10, 0.10), (60, 0.05, 0.05)),
        ("cetirizine", "mometasone_nasal"),
        0.3,
        0.0,
        ("J30.4", "Allergisk rhinitt, uspesifisert"),
        (),
    ),
)

CHRONIC_BY_KEY: dict[str, Chronic] = {c.key: c for c in CHRONIC}


class Acute(NamedTuple):
    key: str
    icpc2: Code
    icd10: Code
    min_age: int
    max_age: int
    sex: str | None  # "female" / "male" / None for both
    weight: float  # relative frequency among GP problems
    medication: str | None  # MEDICATIONS key, or None
    labs: tuple[str, ...]


ACUTE: tuple[Acute, ...] = (
    Acute(
        "urti",
        ("R74", "Akutt øvre luftveisinfeksjon"),
        ("J06.9", "Akutt øvre luftveisinfeksjon, uspesifisert"),
        0,
        120,
        None,
        10.0,
        None,
        ("temperature",),
    ),
    Acute(
        "tonsillitis",
        ("R76", "Akutt tonsillitt/peritonsillær abscess"),
        ("J03.9", "Akutt tonsillitt, uspesifisert"),
        2,
        60,
        None,
        3.0,
        "phenoxymethylpenicillin",
        ("temperature", "crp"),
    ),
    Acute(
        "otitis",
        ("H71", "Akutt mellomørebetennelse/myringitt"),
        ("H66.9", "Otitis media, uspesifisert"),
        0,
        12,
        None,
        6.0,
        "phenoxymethylpenicillin",
        ("temperature",),
    ),
    Acute(
        "cystitis",
        ("U71", "Cystitt/urinveisinfeksjon IKA"),
        ("N39.0", "Urinveisinfeksjon, uspesifisert lokalisasjon"),
        15,
        120,
        "female",
        5.0,
        "pivmecillinam",
        ("temperature",),
    ),
    Acute(
        "bronchitis",
        ("R78", "Akutt bronkitt/bronkiolitt"),
        ("J20.9", "Akutt bronkitt, uspesifisert"),
        0,
        120,
        None,
        3.0,
        None,
        ("temperature", "crp"),
    ),
    Acute(
        "pneumonia",
        ("R81", "Lungebetennelse"),
        ("J18.9", "Pneumoni, uspesifisert"),
        0,
        120,
        None,
        1.5,
        "phenoxymethylpenicillin",
        ("temperature", "crp", "spo2", "resp_rate"),
    ),
    Acute(
        "gastroenteritis",
        ("D73", "Gastroenteritt antatt infeksiøs"),
        ("A09.9", "Gastroenteritt og kolitt av uspesifisert opprinnelse"),
        0,
        120,
        None,
        3.0,
        None,
        ("temperature",),
    ),
    Acute(
        "back_pain",
        ("L03", "Korsryggsymptomer/-plager"),
        ("M54.5", "Lumbago"),
        18,
        120,
        None,
        5.0,
        "ibuprofen",
        (),
    ),
    Acute(
        "eczema",
        ("S88", "Kontaktdermatitt/annet eksem"),
        ("L30.9", "Dermatitt, uspesifisert"),
        0,
        120,
        None,
        3.0,
        "hydrocortisone_cream",
        (),
    ),
    Acute(
        "check",
        ("A98", "Helseundersøkelse/forebyggende tiltak"),
        ("Z00.0", "Generell medisinsk undersøkelse"),
        0,
        120,
        None,
        4.0,
        None,
        (),
    ),
)

#: Hospital stays not caused by a chronic condition: (ICD-10, min age, max age, weight).
HOSPITAL_REASONS: tuple[tuple[Code, int, int, float], ...] = (
    (("J18.9", "Pneumoni, uspesifisert"), 0, 120, 3.0),
    (("S72.0", "Brudd på lårhals"), 65, 120, 2.0),
    (("S52.5", "Brudd i nedre ende av radius"), 5, 120, 1.5),
    (("K35.8", "Akutt appendisitt, annen og uspesifisert"), 5, 60, 1.0),
    (("R07.4", "Brystsmerter, uspesifisert"), 30, 120, 2.0),
    (("N39.0", "Urinveisinfeksjon, uspesifisert lokalisasjon"), 65, 120, 1.5),
    (("J21.9", "Akutt bronkiolitt, uspesifisert"), 0, 1, 3.0),
)


class Medicine(NamedTuple):
    atc: str
    name: str  # INN, Norwegian spelling
    text: str  # product-like description
    dosage: str  # dosage text (Norwegian)


MEDICATIONS: dict[str, Medicine] = {
    "metformin": Medicine(
        "A10BA02", "Metformin", "Metformin tablett 500 mg", "1 tablett 2 ganger daglig"
    ),
    "dapagliflozin": Medicine(
        "A10BK01", "Dapagliflozin", "Dapagliflozin tablett 10 mg", "1 tablett daglig"
    ),
    "liraglutide": Medicine(
        "A10BJ02",
        "Liraglutid",
        "Liraglutid injeksjonsvæske 6 mg/ml",
        "1,2 mg subkutant 1 gang daglig",
    ),
    "amlodipine": Medicine("C08CA01", "Amlodipin", "Amlodipin tablett 5 mg", "1 tablett daglig"),
    "ramipril": Medicine("C09AA05", "Ramipril", "Ramipril kapsel 5 mg", "1 kapsel daglig"),
    "candesartan": Medicine(
        "C09CA06", "Kandesartan", "Kandesartan tablett 8 mg", "1 tablett daglig"
    ),
    "hydrochlorothiazide": Medicine(
        "C03AA03", "Hydroklortiazid", "Hydroklortiazid tablett 25 mg", "1 tablett om morgenen"
    ),
    "atorvastatin": Medicine(
        "C10AA05", "Atorvastatin", "Atorvastatin tablett 20 mg", "1 tablett om kvelden"
    ),
    "simvastatin": Medicine(
        "C10AA01", "Simvastatin", "Simvastatin tablett 20 mg", "1 tablett om kvelden"
    ),
    "salbutamol": Medicine(
        "R03AC02",
        "Salbutamol",
        "Salbutamol inhalasjonsaerosol 0,1 mg/dose",
        "1-2 inhalasjoner ved behov, maks 8 per døgn",
    ),
    "budesonide_formoterol": Medicine(
        "R03AK07",
        "Formoterol og budesonid",
        "Budesonid/formoterol inhalasjonspulver 160/4,5 mikrog",
        "1 inhalasjon 2 ganger daglig",
    ),
    "tiotropium": Medicine(
        "R03BB04",
        "Tiotropiumbromid",
        "Tiotropium inhalasjonspulver 18 mikrog",
        "1 inhalasjon daglig",
    ),
    "sertraline": Medicine("N06AB06", "Sertralin", "Sertralin tablett 50 mg", "1 tablett daglig"),
    "escitalopram": Medicine(
        "N06AB10", "Escitalopram", "Escitalopram tablett 10 mg", "1 tablett daglig"
    ),
    "levothyroxine": Medicine(
        "H03AA01",
        "Levotyroksinnatrium",
        "Levotyroksin tablett 50 mikrog",
        "1 tablett om morgenen på tom mage",
    ),
    "apixaban": Medicine(
        "B01AF02", "Apiksaban", "Apiksaban tablett 5 mg", "1 tablett 2 ganger daglig"
    ),
    "metoprolol": Medicine(
        "C07AB02", "Metoprolol", "Metoprolol depottablett 50 mg", "1 tablett daglig"
    ),
    "bisoprolol": Medicine("C07AB07", "Bisoprolol", "Bisoprolol tablett 5 mg", "1 tablett daglig"),
    "furosemide": Medicine(
        "C03CA01", "Furosemid", "Furosemid tablett 40 mg", "1 tablett om morgenen"
    ),
    "acetylsalicylic_acid": Medicine(
        "B01AC06", "Acetylsalisylsyre", "Acetylsalisylsyre tablett 75 mg", "1 tablett daglig"
    ),
    "paracetamol": Medicine(
        "N02BE01",
        "Paracetamol",
        "Paracetamol tablett 500 mg",
        "2 tabletter inntil 4 ganger daglig ved behov",
    ),
    "ibuprofen": Medicine(
        "M01AE01",
        "Ibuprofen",
        "Ibuprofen tablett 400 mg",
        "1 tablett inntil 3 ganger daglig i 5 dager",
    ),
    "sumatriptan": Medicine(
        "N02CC01",
        "Sumatriptan",
        "Sumatriptan tablett 50 mg",
        "1 tablett ved anfall, kan gjentas etter 2 timer",
    ),
    "cetirizine": Medicine(
        "R06AE07", "Cetirizin", "Cetirizin tablett 10 mg", "1 tablett daglig i pollensesongen"
    ),
    "mometasone_nasal": Medicine(
        "R01AD09",
        "Mometason",
        "Mometason nesespray 50 mikrog/dose",
        "2 spray i hvert nesebor daglig",
    ),
    "phenoxymethylpenicillin": Medicine(
        "J01CE02",
        "Fenoksymetylpenicillin",
        "Fenoksymetylpenicillin tablett 1 g",
        "1 tablett 4 ganger daglig i 5 dager",
    ),
    "pivmecillinam": Medicine(
        "J01CA08",
        "Pivmecillinam",
        "Pivmecillinam tablett 200 mg",
        "1 tablett 3 ganger daglig i 3 dager",
    ),
    "hydrocortisone_cream": Medicine(
        "D07AA02",
        "Hydrokortison",
        "Hydrokortison krem 1 %",
        "Smøres tynt på 1-2 ganger daglig i inntil 1 uke",
    ),
}


class ObservationKind(NamedTuple):
    loinc: str
    display: str
    unit: str  # UCUM code, also used as the human unit
    category: str  # observation-category code
    decimals: int


OBSERVATIONS: dict[str, ObservationKind] = {
    "heart_rate": ObservationKind("8867-4", "Heart rate", "/min", "vital-signs", 0),
    "resp_rate": ObservationKind("9279-1", "Respiratory rate", "/min", "vital-signs", 0),
    "temperature": ObservationKind("8310-5", "Body temperature", "Cel", "vital-signs", 1),
    "spo2": ObservationKind("2708-6", "Oxygen saturation in Arterial blood", "%", "vital-signs", 0),
    "weight": ObservationKind("29463-7", "Body weight", "kg", "vital-signs", 1),
    "height": ObservationKind("8302-2", "Body height", "cm", "vital-signs", 0),
    "bmi": ObservationKind("39156-5", "Body mass index (BMI) [Ratio]", "kg/m2", "vital-signs", 1),
    "hba1c": ObservationKind(
        "4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", "laboratory", 1
    ),
    "glucose": ObservationKind(
        "15074-8", "Glucose [Moles/volume] in Blood", "mmol/L", "laboratory", 1
    ),
    "cholesterol": ObservationKind(
        "2093-3", "Cholesterol [Mass/volume] in Serum or Plasma", "mmol/L", "laboratory", 1
    ),
    "ldl": ObservationKind(
        "13457-7",
        "Cholesterol in LDL [Mass/volume] in Serum or Plasma by calculation",
        "mmol/L",
        "laboratory",
        1,
    ),
    "creatinine": ObservationKind(
        "14682-9", "Creatinine [Moles/volume] in Serum or Plasma", "umol/L", "laboratory", 0
    ),
    "hemoglobin": ObservationKind(
        "718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL", "laboratory", 1
    ),
    "crp": ObservationKind(
        "1988-5", "C reactive protein [Mass/volume] in Serum or Plasma", "mg/L", "laboratory", 0
    ),
    "tsh": ObservationKind(
        "3016-3", "Thyrotropin [Units/volume] in Serum or Plasma", "m[IU]/L", "laboratory", 2
    ),
}

BP_PANEL = ("85354-9", "Blood pressure panel with all children optional")
BP_SYSTOLIC = ("8480-6", "Systolic blood pressure")
BP_DIASTOLIC = ("8462-4", "Diastolic blood pressure")


class Vaccine(NamedTuple):
    atc: str
    display: str


VACCINES: dict[str, Vaccine] = {
    "dtap_ipv_hib_hepb": Vaccine(
        "J07CA09", "Difteri-haemophilus influenzae B-pertussis-poliomyelitt-tetanus-hepatitt B"
    ),
    "pcv": Vaccine("J07AL02", "Pneumokokk, renset polysakkaridantigen konjugert"),
    "rota": Vaccine("J07BH01", "Rotavirus, levende svekket"),
    "mmr": Vaccine("J07BD52", "Meslinger, kombinasjoner med kusma og røde hunder, levende svekket"),
    "dtap_ipv": Vaccine("J07CA02", "Difteri-pertussis-poliomyelitt-tetanus"),
    "hpv": Vaccine("J07BM03", "Papillomavirus (humant type 6,11,16,18,31,33,45,52,58)"),
    "influenza": Vaccine("J07BB02", "Influensa, inaktivert, splittvirus eller overflateantigen"),
    "covid19": Vaccine("J07BX03", "Covid-19-vaksiner"),
}

#: Childhood immunisation programme: (vaccine key, age in days).
CHILDHOOD_PROGRAMME: tuple[tuple[str, int], ...] = (
    ("rota", 42),
    ("dtap_ipv_hib_hepb", 91),
    ("pcv", 91),
    ("rota", 91),
    ("dtap_ipv_hib_hepb", 152),
    ("pcv", 152),
    ("dtap_ipv_hib_hepb", 365),
    ("pcv", 365),
    ("mmr", 456),
    ("dtap_ipv", 7 * 365 + 60),
    ("mmr", 11 * 365 + 60),
    ("hpv", 12 * 365 + 60),
    ("dtap_ipv", 15 * 365 + 60),
)

#: Allergies: (category, text, ATC code or None, criticality, reaction text).
ALLERGIES: tuple[tuple[str, str, str | None, str, str], ...] = (
    ("medication", "Penicilliner", "J01CE", "high", "Urtikaria"),
    ("medication", "Trimetoprim og sulfonamider", "J01EE", "low", "Utslett"),
    ("medication", "Ibuprofen", "M01AE01", "low", "Astmaanfall"),
    ("food", "Peanøtter", None, "high", "Anafylaksi"),
    ("food", "Skalldyr", None, "high", "Hevelse i lepper og svelg"),
    ("environment", "Bjørkepollen", None, "low", "Rennende nese og kløe i øynene"),
    ("environment", "Katt", None, "low", "Nysing og tett nese"),
    ("environment", "Nikkel", None, "low", "Kontakteksem"),
)
