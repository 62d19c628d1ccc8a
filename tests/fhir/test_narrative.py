"""Narrative XHTML rules (enjournal.fhir.narrative and its use by the validator)."""

from __future__ import annotations

import pytest

from enjournal.fhir.errors import Invalid, Unprocessable
from enjournal.fhir.narrative import problems
from enjournal.fhir.validation import check, validate

NS = 'xmlns="http://www.w3.org/1999/xhtml"'


def div(body: str, attrs: str = "") -> str:
    return f"<div {NS}{attrs}>{body}</div>"


def messages(text) -> list[str]:
    return [m for _, m in problems(text)]


@pytest.mark.parametrize(
    "text",
    [
        div("<p>Hello <b>world</b></p>"),
        div('<a name="x" href="http://example.org/a?b=c">link</a>'),
        div('<img src="data:image/png;base64,iVBORw0KGgo=" alt="x"/>'),
        div('<table border="1"><tr><td colspan="2" style="color: red">x</td></tr></table>'),
        div('<span xml:lang="nb" lang="nb">Hei</span><!-- a comment -->'),
        div("<p>&lt;escaped&gt; &amp; &#233;</p>"),
    ],
)
def test_allowed_narratives_have_no_problem(text):
    assert problems(text) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (div("<p>x<script>alert(1)</script></p>"), "<script> is not allowed"),
        (div('<p onclick="alert(1)">x</p>'), "event handler attribute 'onclick'"),
        (div('<p ONMOUSEOVER="x">x</p>'), "event handler attribute 'ONMOUSEOVER'"),
        (div('<a href=" jav&#x09;ascript:alert(1)">x</a>'), "javascript: URL"),
        (div('<a href="data:text/html;base64,PHNjcmlwdD4=">x</a>'), "data: URL"),
        (div('<img src="data:text/html,x" alt="x"/>'), "data: URL"),
        (div('<iframe src="http://x"></iframe>'), "<iframe> is not allowed"),
        (div("<object>x</object>"), "<object> is not allowed"),
        (div('<form action="x">x</form>'), "<form> is not allowed"),
        (div('<base href="http://evil/"/>x'), "<base> is not allowed"),
        (div('<link rel="stylesheet" href="x"/>x'), "<link> is not allowed"),
        (div('<meta http-equiv="refresh"/>x'), "<meta> is not allowed"),
        (
            div('<a xmlns:xlink="http://www.w3.org/1999/xlink" xlink:href="x">x</a>'),
            "attribute 'href' in namespace http://www.w3.org/1999/xlink",
        ),
        (div('<p style="width: expression(alert(1))">x</p>'), "style attribute"),
        (div('<p bogus="1">x</p>'), "attribute 'bogus' is not allowed on <p>"),
        (div("<svg:svg xmlns:svg='http://www.w3.org/2000/svg'>x</svg:svg>"), "not in the XHTML"),
        ("<div>no namespace</div>", "root element must be a div in the XHTML namespace"),
        (f"<p {NS}>not a div</p>", "root element must be a div"),
        (div("  <p> </p> "), "non-whitespace content"),
        (div("<?php echo 1; ?>x"), "processing instructions"),
        # XML-valid, but an HTML parser ends these early and runs what follows as markup.
        (div("x<![CDATA[><img src=x onerror=alert(1)>]]>"), "CDATA sections"),
        (div("x<!--><img src=x onerror=alert(1)>-->"), "a comment may not hold"),
        (div("x<!---><img src=x onerror=alert(1)>-->"), "a comment may not hold"),
    ],
)
def test_rule_breaks_are_named_without_content(text, expected):
    found = problems(text)
    assert found, text
    assert not any(malformed for malformed, _ in found)
    assert any(expected in m for m in messages(text)), messages(text)
    assert all("alert" not in m for m in messages(text))


def test_the_path_inside_the_div_is_named():
    text = div("<p>a</p><p>b<span><script>x</script></span></p>")
    assert any("div/p[2]/span/script" in m for m in messages(text))


@pytest.mark.parametrize(
    "text",
    [
        f'<!DOCTYPE div [<!ENTITY x "y">]><div {NS}>&x;</div>',
        f'<!DOCTYPE lolz [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><div {NS}>&b;</div>',
        f'<!DOCTYPE div SYSTEM "file:///etc/passwd"><div {NS}>x</div>',
    ],
)
def test_declarations_are_refused_before_parsing(text):
    assert messages(text) == ["DOCTYPE and entity declarations are not allowed in a narrative"]


@pytest.mark.parametrize(
    "text",
    [div("<p>unclosed"), div("<p>&nbsp;</p>"), "just text", div("<p></b>"), "<div"],
)
def test_malformed_xml_is_reported_as_malformed(text):
    found = problems(text)
    assert found and all(malformed for malformed, _ in found)


def patient_with(text: str) -> dict:
    return {"resourceType": "Patient", "text": {"status": "generated", "div": text}}


def test_check_refuses_a_rule_break_with_422_and_malformed_with_400():
    with pytest.raises(Unprocessable) as rule:
        check(patient_with(div("x<script>alert('stolen')</script>")))
    assert rule.value.status == 422
    assert "stolen" not in rule.value.message
    with pytest.raises(Invalid) as bad:
        check(patient_with(div("<p>x")))
    assert bad.value.status == 400


@pytest.mark.parametrize(
    ("resource", "where"),
    [
        (
            {
                "resourceType": "Composition",
                "status": "final",
                "type": {"text": "x"},
                "date": "2020-01-01",
                "author": [{"display": "x"}],
                "title": "x",
                "section": [{"section": [{"text": {"status": "generated", "div": "BAD"}}]}],
            },
            "Composition.section[0].section[0].text.div",
        ),
        (
            {
                "resourceType": "Patient",
                "contained": [{"resourceType": "Organization", "id": "o", "name": "O", "text": {}}],
                "managingOrganization": {"reference": "#o"},
            },
            "Patient.contained[0].text.div",
        ),
        (
            {
                "resourceType": "Bundle",
                "type": "collection",
                "entry": [{"resource": {"resourceType": "Patient", "text": {}}}],
            },
            "Bundle.entry[0].resource.text.div",
        ),
        (
            {
                "resourceType": "Parameters",
                "parameter": [{"name": "p", "resource": {"resourceType": "Patient", "text": {}}}],
            },
            "Parameters.parameter[0].resource.text.div",
        ),
    ],
)
def test_every_narrative_in_a_resource_is_checked(resource, where):
    script = div('<p onclick="x()">x</p>')
    text = {"status": "generated", "div": script}

    # put the hostile div where the test case left a placeholder
    def place(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "text" and (value == {} or (isinstance(value, dict) and "div" in value)):
                    node[key] = text
                else:
                    place(value)
        elif isinstance(node, list):
            for item in node:
                place(item)

    place(resource)
    errors = [i for i in validate(resource) if i.severity == "error"]
    assert [i.expression for i in errors] == [[where]], errors
    assert "onclick" in errors[0].diagnostics
