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
    from enjournal.services.eresept.fest.catalogue import FestError, load_catalogue
    from enjournal.storage import open_store

    out = out or sys.stderr
    store = await open_store(database_url)
    try:
        summary = await load_catalogue(store, path)
    except FestError as e:
        print(f"enjournal fest load: {e} (nothing loaded)", file=out)
        return 2
    finally:
        await store.close()
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
