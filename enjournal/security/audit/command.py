"""``enjournal audit verify``."""

from __future__ import annotations

from enjournal.security.audit.verify import verify


async def verify_command(database_url: str) -> int:
    """``enjournal audit verify``: check the chain, print a report; 0 when intact, else 1."""
    from rich.console import Console
    from rich.table import Table

    from enjournal.bootstrap import build_platform, close_platform
    from enjournal.settings import Settings

    console = Console()
    try:
        platform = await build_platform(Settings.from_env(database_url=database_url), migrate=False)
        store = platform.store
    except Exception as exc:
        console.print(f"[bold red]cannot open the database:[/] {exc}")
        return 1
    try:
        async with store.transaction(write=False) as tx:
            result = await verify(tx)
    except Exception as exc:
        console.print(f"[bold red]cannot read the audit log:[/] {exc}")
        return 1
    finally:
        await close_platform(platform)
    table = Table(title="Audit log verification", show_header=False)
    table.add_row("events verified", f"{result.checked:,}")
    table.add_row("last seq in log", str(result.last_seq))
    table.add_row("head seq", str(result.head_seq))
    table.add_row("head hash (keep a copy)", result.head_hash.hex())
    table.add_row("time", f"{result.seconds:.2f} s")
    console.print(table)
    if result.ok:
        console.print("[bold green]intact:[/] every event is chained to the one before it")
        return 0
    problem = result.problem
    assert problem is not None
    console.print(f"[bold red]TAMPERED ({problem.kind}) at seq {problem.seq}:[/] {problem.detail}")
    return 1
