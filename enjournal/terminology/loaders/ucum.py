"""UCUM (Unified Code for Units of Measure, case-sensitive ``c/s`` symbols).

UCUM is a grammar, not a list: ``is_valid_ucum`` checks an expression against the UCUM
syntax (prefixes x atoms, ``.`` and ``/``, exponents, ``(...)``, ``{annotations}``,
``10*3``...) with the atom and prefix tables below (the commonly used part of the UCUM
essence: SI, ISO 1000, clinical, customary and information units; a few exotic atoms are
missing, see ``docs/terminology.md``).  It checks syntax only, not that units are
commensurable.

``load_ucum()`` loads the shipped ``data/ucum-common.json`` (common codes with a display,
for ``$lookup`` and ``$expand``), a FHIR CodeSystem fragment.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from enjournal.terminology.model import CodeSystemDraft

UCUM_URL = "http://unitsofmeasure.org"
DATA = Path(__file__).resolve().parent.parent / "data" / "ucum-common.json"


def _symbols(text: str) -> tuple[str, ...]:
    return tuple(text.split())


PREFIXES = _symbols("Y Z E P T G M k h da d c m u n p f a z y Ki Mi Gi Ti")
BINARY_PREFIXES = frozenset({"Ki", "Mi", "Gi", "Ti"})  # only on bit, By, Bd

#: atoms that take a prefix
METRIC_ATOMS = frozenset(
    _symbols(
        """
    [AU] [BAU] [c] [Cal] [CFU] [e] [eps_0] [FFU] [G] [h] [iU] [IU] [k] [ly] [m_e] [m_p] [mu_0]
    [PFU] A ar b B B[10.nV] B[kW] B[mV] B[SPL] B[uV] B[V] B[W] bar Bd Bi bit Bq By C cal cd Cel
    Ci dyn eq erg eV F G g g% Gal Gb gf Gy H Hz J K kat Ky l L lm Lmb lx m m[H2O] m[Hg] mho mol
    Mx N Np Oe Ohm osm P Pa pc ph R RAD rad REM s S sb sr st St Sv t T tex u U V W Wb
        """
    )
)
#: atoms that take no prefix
NONMETRIC_ATOMS = frozenset(
    _symbols(
        """
    % %[slope] ' '' 10* 10^ [acr_br] [acr_us] [Amb'a'1'U] [anti'Xa'U] [APL'U] [arb'U] [bbl_us]
    [bdsk'U] [beth'U] [bf_i] [Btu] [Btu_39] [Btu_59] [Btu_60] [Btu_IT] [Btu_m] [Btu_th] [bu_br]
    [bu_us] [car_Au] [car_m] [CCID_50] [cft_i] [Ch] [ch_br] [ch_us] [cicero] [cin_i] [cml_i]
    [cr_i] [crd_us] [cup_m] [cup_us] [cyd_i] [D'ag'U] [degF] [degR] [degRe] [den] [didot] [diop]
    [dpt_us] [dqt_us] [dr_ap] [dr_av] [drp] [dye'U] [EID_50] [ELU] [fdr_br] [fdr_us] [FEU]
    [foz_br] [foz_m] [foz_us] [ft_br] [ft_i] [ft_us] [fth_br] [fth_i] [fth_us] [fur_us] [g]
    [gal_br] [gal_us] [gal_wi] [gil_br] [gil_us] [GPL'U] [gr] [hd_i] [hnsf'U] [hp'_C] [hp'_M]
    [hp'_Q] [hp'_X] [HP] [hp_C] [hp_M] [hp_Q] [hp_X] [HPF] [in_br] [in_i'H2O] [in_i'Hg] [in_i]
    [in_us] [IR] [ka'U] [kn_br] [kn_i] [knk'U] [kp_C] [kp_M] [kp_Q] [kp_X] [lb_ap] [lb_av]
    [lb_tr] [lbf_av] [lcwt_av] [Lf] [ligne] [lk_br] [lk_us] [lne] [LPF] [lton_av]
    [m/s2/Hz^(1/2)] [mclg'U] [mesh_i] [MET] [mi_br] [mi_i] [mi_us] [mil_i] [mil_us] [min_br]
    [min_us] [MPL'U] [nmi_br] [nmi_i] [oz_ap] [oz_av] [oz_m] [oz_tr] [p'diop] [pc_br] [pca]
    [pca_pr] [pH] [pi] [pied] [pk_br] [pk_us] [pnt] [pnt_pr] [PNU] [pouce] [ppb] [ppm] [ppth]
    [pptr] [PRU] [psi] [pt_br] [pt_us] [pwt_tr] [qt_br] [qt_us] [rch_us] [rd_br] [rd_us]
    [rlk_us] [S] [sc_ap] [sct] [scwt_av] [sft_i] [sin_i] [smgy'U] [smi_us] [smoot] [srd_us]
    [ston_av] [stone_av] [syd_i] [tb'U] [tbs_m] [tbs_us] [TCID_50] [todd'U] [tsp_m] [tsp_us]
    [twp] [USP'U] [wood'U] [yd_br] [yd_i] [yd_us] a a_g a_j a_t Ao atm att AU bit_s cal_[15]
    cal_[20] cal_IT cal_m cal_th circ d deg gon h min mo mo_g mo_j mo_s sph wk
        """
    )
)
ATOMS = METRIC_ATOMS | NONMETRIC_ATOMS

_EXPONENT = re.compile(r"^(.*?)([+-]?\d+)$")
_ANNOTATION = re.compile(r"\{[!-z|~]*\}")  # ASCII 33..126 without { and }


def _simple_unit(text: str) -> bool:
    if text in ATOMS:
        return True
    for prefix in PREFIXES:
        if text.startswith(prefix) and len(text) > len(prefix):
            atom = text[len(prefix) :]
            if atom in METRIC_ATOMS and (
                prefix not in BINARY_PREFIXES or atom in ("bit", "By", "Bd")
            ):
                return True
    return False


def _component(text: str) -> bool:
    """An annotatable with an optional annotation, an annotation alone, or a factor."""
    m = re.search(r"\{[^{}]*\}$", text)
    if m:
        if not _ANNOTATION.fullmatch(m.group(0)):
            return False
        text = text[: m.start()]
        if not text:
            return True
    if "{" in text or "}" in text:
        return False
    if text.isdigit():
        return True  # a factor
    if text in ATOMS and not text[-1].isdigit():
        return True
    m = _EXPONENT.match(text)
    if m and m.group(1):
        unit = m.group(1)
        # "10*3", "m2", "s-1"; "10*" and "10^" need their exponent
        return _simple_unit(unit)
    return _simple_unit(text)


class _Parser:
    def __init__(self, text: str):
        self.s = text
        self.i = 0

    def term(self) -> bool:
        if not self.component():
            return False
        while self.i < len(self.s) and self.s[self.i] in "./":
            self.i += 1
            if not self.component():
                return False
        return True

    def component(self) -> bool:
        s = self.s
        if self.i < len(s) and s[self.i] == "(":
            self.i += 1
            if not self.term() or self.i >= len(s) or s[self.i] != ")":
                return False
            self.i += 1
            if self.i < len(s) and s[self.i] == "{":  # annotation after a parenthesis
                end = s.find("}", self.i)
                if end < 0 or not _ANNOTATION.fullmatch(s[self.i : end + 1]):
                    return False
                self.i = end + 1
            return True
        start = self.i
        depth_sq = 0
        while self.i < len(s):
            c = s[self.i]
            if c == "[":
                depth_sq += 1
            elif c == "]":
                depth_sq -= 1
                if depth_sq < 0:
                    return False
            elif c == "{":
                end = s.find("}", self.i)
                if end < 0:
                    return False
                self.i = end
            elif depth_sq == 0 and c in "./()":
                break
            self.i += 1
        if depth_sq:
            return False
        text = s[start : self.i]
        return bool(text) and _component(text)


@lru_cache(maxsize=4096)
def is_valid_ucum(code: str) -> bool:
    """Whether ``code`` is a syntactically valid UCUM (c/s) expression, e.g. ``mg``,
    ``mmol/L``, ``/min``, ``mm[Hg]``, ``kg/m2``, ``10*9/L``, ``{beats}/min``."""
    if not isinstance(code, str) or not code or code != code.strip() or " " in code:
        return False
    if not all(33 <= ord(c) <= 126 for c in code):
        return False
    p = _Parser(code)
    if code.startswith("/"):
        p.i = 1
    return p.term() and p.i == len(code)


def load_ucum(path: str | Path | None = None, **options: Any) -> CodeSystemDraft:
    """The shipped list of common UCUM codes (or another CodeSystem JSON of UCUM codes)."""
    from enjournal.terminology.loaders.fhir_json import load_fhir_json

    return load_fhir_json(path or DATA, **options)
