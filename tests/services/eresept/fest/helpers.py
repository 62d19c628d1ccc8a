"""Small FEST M30 files written for the tests (made-up entries in the real shape)."""

from __future__ import annotations

from pathlib import Path

M30 = "http://www.kith.no/xmlstds/eresept/m30/2014-12-01"
FS = "http://www.kith.no/xmlstds/eresept/forskrivning/2014-12-01"
HEAD = '<?xml version="1.0" encoding="utf-8"?>\n'


def package(varenr: str | None, name: str, atc: str, group: str = "C", status: str = "A") -> str:
    number = f"<Varenr>{varenr}</Varenr>" if varenr is not None else ""
    return (
        f'<OppfLegemiddelpakning><Id>ID_OPPF-{varenr}</Id><Status V="{status}"/>'
        f'<Legemiddelpakning xmlns="{FS}"><Atc V="{atc}" DN="{atc}"/>'
        f'<NavnFormStyrke>{name}</NavnFormStyrke><Reseptgruppe V="{group}"/>'
        f"<Id>ID_PK-{varenr}</Id>{number}</Legemiddelpakning></OppfLegemiddelpakning>\n"
    )


def interaction(id_: str, relevans: str, side_a: list[str], side_b: list[str]) -> str:
    def group(codes: list[str]) -> str:
        return (
            "<Substansgruppe>"
            + "".join(f'<Substans><Substans>{c}</Substans><Atc V="{c}"/></Substans>' for c in codes)
            + "</Substansgruppe>"
        )

    return (
        f"<OppfInteraksjon><Id>ID_OPPF-{id_}</Id><Interaksjon><Id>{id_}</Id>"
        f'<Relevans V="{relevans}"/><KliniskKonsekvens>consequence {id_}</KliniskKonsekvens>'
        f"<Interaksjonsmekanisme>mechanism {id_}</Interaksjonsmekanisme>"
        f"{group(side_a)}{group(side_b)}</Interaksjon></OppfInteraksjon>\n"
    )


def fest(packages: str = "", interactions: str = "", namespace: str = M30) -> str:
    return (
        f'{HEAD}<FEST xmlns="{namespace}"><HentetDato>2025-01-01T00:00:00</HentetDato>\n'
        f"<KatLegemiddelpakning>\n{packages}</KatLegemiddelpakning>\n"
        f"<KatInteraksjon>\n{interactions}</KatInteraksjon>\n</FEST>\n"
    )


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def write_large(path: Path, count: int) -> Path:
    """A synthetic catalogue of ``count`` packages in the real entry shape, written in a
    stream (not built in memory)."""
    with open(path, "w", encoding="utf-8") as out:
        out.write(f'{HEAD}<FEST xmlns="{M30}"><HentetDato>2025-01-01T00:00:00</HentetDato>\n')
        out.write("<KatLegemiddelpakning>\n")
        for n in range(count):
            varenr = f"{100000 + n}"
            out.write(
                f"<OppfLegemiddelpakning><Id>ID_OPPF-{varenr}</Id>"
                "<Tidspunkt>2025-01-01T00:00:00</Tidspunkt>"
                '<Status V="A" DN="Aktiv oppføring"/>'
                f'<Legemiddelpakning xmlns="{FS}">'
                f'<Atc V="N02BE01" S="2.16.578.1.12.4.1.1.7180" DN="Paracetamol"/>'
                f"<NavnFormStyrke>Syntetisk preparat nr. {n} tab 500 mg</NavnFormStyrke>"
                '<Reseptgruppe V="C" DN="Reseptgruppe C"/>'
                '<LegemiddelformKort V="53" S="2.16.578.1.12.4.1.1.7448" DN="Tablett"/>'
                f"<Id>ID_PK-{varenr}</Id><Varenr>{varenr}</Varenr><Ean>70{varenr:0>11}</Ean>"
                "<Pakningsinfo><Pakningsstr>100</Pakningsstr>"
                '<EnhetPakning V="stk" S="2.16.578.1.12.4.1.1.7452" DN="stykk"/></Pakningsinfo>'
                '<PrisVare><Type V="4" S="2.16.578.1.12.4.1.1.7453" DN="AUP"/>'
                '<Pris V="69.80" U="NOK"/><GyldigFraDato>2025-01-01</GyldigFraDato></PrisVare>'
                "</Legemiddelpakning></OppfLegemiddelpakning>\n"
            )
        out.write("</KatLegemiddelpakning>\n</FEST>\n")
    return path
