"""``enjournal fest load FILE``: load a FEST M30 file (.xml, or a .zip holding one).

Exit 0 with the counts when it loaded; exit 2 with one clear line when the file is missing
or broken (and then nothing of it was stored: see ``catalogue.load_file``)."""

from __future__ import annotations

import os
import sys
from typing import TextIO


async def load_command(
    database_url: str, path: str | os.PathLike[str], *, out: TextIO | None = None
) -> int:
    from enjournal.bootstrap import build_platform, close_platform
    from enjournal.fhir.errors import Unprocessable
    from enjournal.services.eresept.fest.catalogue import FestError, load_catalogue
    from enjournal.settings import Settings

    out = out or sys.stderr
    platform = await build_platform(Settings.from_env(database_url=database_url))
    try:
        summary = await load_catalogue(platform.store, os.fspath(path))
    except FestError as e:
        print(f"enjournal fest load: {e} (nothing loaded)", file=out)
        return 2
    except Unprocessable as e:  # a write check refused an entry, as the API would (422)
        print(f"enjournal fest load: {e.message} (that batch not loaded)", file=out)
        return 2
    finally:
        await close_platform(platform)
    print(
        f"loaded FEST {path}"
        + (f" (HentetDato {summary.fetched})" if summary.fetched else "")
        + f": {summary.products:,} products, {summary.interactions:,} interactions"
        + (
            f" ({summary.skipped_interactions:,} not assessed or without ATC codes skipped)"
            if summary.skipped_interactions
            else ""
        )
        + f"; {summary.written:,} created or changed, {summary.inactivated:,} packages no "
        f"longer listed marked inactive, {summary.removed_interactions:,} interactions removed",
        file=out,
    )
    return 0
