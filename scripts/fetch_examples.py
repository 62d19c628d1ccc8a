"""Fetch the official FHIR R4 example package into .cache/ for the tests (npm pack, CC0)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from build_definitions import fetch_package

if __name__ == "__main__":
    print(fetch_package())
