"""The FEST M30 parser (pass one of a load): the demo file, broken files, zip files, and
memory that stays bounded on a full-size file."""

from __future__ import annotations

import tracemalloc
import zipfile

import pytest

from enjournal.services.eresept.fest.loader import DEMO_FILE, FestError, open_catalogue, parse

from .helpers import FS, M30, fest, interaction, package, write, write_large


def _parse(path):
    with open_catalogue(path) as stream:
        parsed = parse(stream, name=str(path))
    records = list(parsed.records())
    parsed.close()
    return parsed, records


def test_the_demo_catalogue_parses_with_every_entry():
    text = DEMO_FILE.read_text(encoding="utf-8")
    parsed, records = _parse(DEMO_FILE)
    assert parsed.packages == text.count("<OppfLegemiddelpakning>")
    assert parsed.consumables == text.count("<OppfHandelsvare>")
    assert parsed.interactions == text.count("<Interaksjon>")
    assert parsed.skipped_interactions == text.count("<InteraksjonIkkeVurdert>")
    assert parsed.fetched == "2024-01-15T03:00:00"
    kinds = {r.get("kind", "legemiddel") for r in records if r["t"] != "interaction"}
    assert kinds == {"legemiddel", "forbruksmateriell", "naeringsmiddel"}
    groups = {r["group"]["code"] for r in records if r["t"] == "package"}
    assert groups == {"A", "B", "C"}
    assert "MADE-UP demo catalogue" in text  # says plainly that it is not real FEST data


def test_a_package_record_carries_what_the_catalogue_needs(tmp_path):
    path = write(tmp_path / "f.xml", fest(package("123456", "Testol tab 5 mg", "N05BA01", "B")))
    _, (record,) = _parse(path)
    assert record["varenr"] == "123456" and record["name"] == "Testol tab 5 mg"
    assert record["atc"]["code"] == "N05BA01" and record["group"]["code"] == "B"
    assert record["active"] is True


def test_a_package_with_another_status_is_inactive(tmp_path):
    path = write(tmp_path / "f.xml", fest(package("123456", "Gammel tab", "N02BE01", status="U")))
    _, (record,) = _parse(path)
    assert record["active"] is False


BROKEN = {
    "not xml": ("this is not XML at all\n", "not well-formed XML"),
    "empty": ("", "not well-formed XML"),
    "wrong root": (f'<?xml version="1.0"?><Katalog xmlns="{M30}"/>', "not a FEST M30 file"),
    "wrong namespace": (fest(namespace=FS), "not a FEST M30 file"),
    "no namespace": ("<FEST><KatLegemiddelpakning/></FEST>", "not a FEST M30 file"),
    "package without varenr": (
        fest(package("111111", "A", "N02BE01") + package(None, "Uten varenr", "N02BE01")),
        "OppfLegemiddelpakning no. 2 (Id ID_OPPF-None): Legemiddelpakning (Varenr) has no item",
    ),
    "package without reseptgruppe": (
        fest(package("111111", "A", "N02BE01").replace('<Reseptgruppe V="C"/>', "")),
        "package 111111 has no Reseptgruppe",
    ),
    "bad varenr": (fest(package("12 34", "A", "N02BE01")), "not a valid varenummer"),
    "bad relevans": (fest(interactions=interaction("X1", "7", ["A"], ["B"])), "Relevans"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_file_fails_with_a_clear_message(tmp_path, case):
    text, message = BROKEN[case]
    path = write(tmp_path / "broken.xml", text)
    with pytest.raises(FestError) as e:
        _parse(path)
    assert message in str(e.value)
    assert str(path) in str(e.value)


def test_a_truncated_file_names_the_line(tmp_path):
    text = DEMO_FILE.read_text(encoding="utf-8")
    cut = text[: len(text) // 2]
    path = write(tmp_path / "cut.xml", cut)
    with pytest.raises(FestError) as e:
        _parse(path)
    assert "not well-formed XML" in str(e.value)
    assert f"line {cut.count(chr(10)) + 1}" in str(e.value)


def test_a_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(FestError, match="no such file"):
        _parse(tmp_path / "absent.xml")


def test_a_zip_holding_the_catalogue_loads_like_the_xml(tmp_path):
    path = tmp_path / "fest251.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.write(DEMO_FILE, "fest251.xml")
        archive.writestr("readme.txt", "not xml")
    from_zip, zipped = _parse(path)
    from_xml, plain = _parse(DEMO_FILE)
    assert zipped == plain and from_zip.packages == from_xml.packages


def test_a_zip_without_one_xml_file_is_refused(tmp_path):
    path = tmp_path / "other.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a.xml", "<FEST/>")
        archive.writestr("b.xml", "<FEST/>")
    with pytest.raises(FestError, match=r"one FEST \.xml file"):
        _parse(path)


def test_interactions_not_keyed_on_two_sides_are_skipped_not_loaded(tmp_path):
    one_sided = interaction("X2", "1", ["B01AA03"], []).replace(
        "<Substansgruppe></Substansgruppe>", ""
    )
    path = write(
        tmp_path / "f.xml", fest(interactions=one_sided + interaction("X3", "2", ["A"], ["B"]))
    )
    parsed, records = _parse(path)
    assert [r["id"] for r in records] == ["X3"]
    assert parsed.skipped_interactions == 1


def test_the_parse_streams_a_full_size_file_in_bounded_memory(tmp_path):
    # 50,000 packages: several times the real FEST's ~10,000, about 40 MB of XML.
    path = write_large(tmp_path / "large.xml", 50_000)
    size = path.stat().st_size
    tracemalloc.start()
    try:
        with open_catalogue(path) as stream:
            parsed = parse(stream)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    try:
        assert parsed.packages == 50_000
        assert sum(1 for _ in parsed.records()) == 50_000
    finally:
        parsed.close()
    # One entry at a time is held (the records go to a spool file), not the document.
    assert peak < size / 20, (peak, size)
