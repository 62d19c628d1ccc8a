"""Who is calling: the principal a verified access token describes.

Personnel come through a HelseID-style provider (HPR number, profession, organisation),
citizens through an ID-porten-style one (national identity number, assurance level), and
systems with client credentials.  Everything the access policy needs is here, so the policy
never looks at raw token claims.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["personnel", "citizen", "system"]


@dataclass(frozen=True)
class Principal:
    kind: Kind
    subject: str  # the token's sub
    client_id: str
    scopes: frozenset[str] = field(default_factory=frozenset)
    name: str | None = None
    hpr: str | None = None  # personnel: HPR number
    profession: str | None = None  # personnel: Volven 9060 code, e.g. LE (lege), SP, FA
    org_nr: str | None = None  # personnel/system: organisation number (point of care)
    her_id: str | None = None  # personnel: HER-id of the organisation
    pid: str | None = None  # citizen: fødselsnummer / D-nummer
    assurance: str | None = None  # citizen: low | substantial | high
    patient: str | None = None  # SMART launch context: the patient's resource id

    @property
    def label(self) -> str:
        """Who, for logs and audit: HPR number, national id or client id."""
        if self.kind == "personnel":
            return f"HPR {self.hpr}" if self.hpr else self.subject
        if self.kind == "citizen":
            return "citizen"
        return f"system {self.client_id}"
