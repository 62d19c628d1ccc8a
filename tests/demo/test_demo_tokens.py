"""`enjournal demo --port 8081` and the token command it prints: in process, the app built
with the settings the demo serves with accepts the printed command's tokens, on any port."""

from __future__ import annotations

import argparse
import asyncio
import shlex
from pathlib import Path

import httpx
import pytest

from enjournal.bootstrap import build_platform, close_platform
from enjournal.cli import main
from enjournal.demo.command import ready_for_tokens, run_demo, serve_environment, token_command
from enjournal.demo.tokens import SERVER_FILE, record_server
from enjournal.server.app import create_app
from enjournal.settings import Settings

PORT = 8081
BASE = f"http://127.0.0.1:{PORT}"


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory):
    data = tmp_path_factory.mktemp("demo") / "data"
    args = argparse.Namespace(
        data=str(data), patients=4, seed=1, host="127.0.0.1", port=PORT, no_serve=True
    )
    assert run_demo(args) == 0
    return data


@pytest.fixture
def demo_env(demo_data, monkeypatch):
    """The environment `enjournal demo --port 8081` serves with."""
    for name, value in serve_environment(demo_data, "127.0.0.1", PORT).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("ENJOURNAL_AUTH", "on")
    monkeypatch.setenv("ENJOURNAL_JOBS", "off")
    ready_for_tokens(demo_data, BASE)  # as the demo does before it serves
    return demo_data


def token(argv: list[str], capsys) -> str:
    assert main(argv) == 0
    return capsys.readouterr().out.strip()


def printed_command(data, who: str) -> list[str]:
    """The command the demo prints, as the shell would split it, without the program."""
    words = shlex.split(token_command(data, BASE))
    assert words[0].endswith("enjournal")
    return [*words[1:], "--as", who]


async def statuses(requests: list[tuple[str, str]]) -> list[int]:
    settings = Settings.from_env()
    assert settings.public_url == BASE
    platform = await build_platform(settings, serving=True)  # as `enjournal serve` does
    store = platform.store
    app = create_app(settings, platform=platform)
    await app.state.security.start(store)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
            return [
                (await http.get(path, headers={"Authorization": f"Bearer {t}"})).status_code
                for t, path in requests
            ]
    finally:
        await app.state.security.stop()
        await close_platform(platform)


def test_printed_token_command_names_the_demo_url(demo_data):
    assert f"--public-url {BASE}" in token_command(demo_data, BASE)


def test_printed_commands_make_tokens_the_server_on_another_port_accepts(demo_env, capsys):
    gp = token(printed_command(demo_env, "gp"), capsys)
    citizen = token(printed_command(demo_env, "citizen"), capsys)
    system = token(printed_command(demo_env, "system"), capsys)
    got = asyncio.run(
        statuses(
            [
                (system, "/fhir/Patient?_count=1"),
                (citizen, "/fhir/Patient"),
                (gp, "/fhir/Patient?_count=1"),
            ]
        )
    )
    assert got[:2] == [200, 200]
    assert got[2] != 401  # accepted (the policy may still ask a GP to name a patient)


def test_token_finds_the_running_demos_url_in_the_data_folder(demo_env, capsys, monkeypatch):
    monkeypatch.delenv("ENJOURNAL_PUBLIC_URL")  # a fresh shell: nothing but the data folder
    (demo_env / SERVER_FILE).unlink(missing_ok=True)
    plain = ["token", "--data", str(demo_env), "--as", "system"]
    before = token(plain, capsys)  # nothing recorded: the 8080 default
    record_server(demo_env, BASE, "enjournal")  # what `enjournal demo --port 8081` writes
    after = token(plain, capsys)
    monkeypatch.setenv("ENJOURNAL_PUBLIC_URL", BASE)
    assert asyncio.run(
        statuses([(before, "/fhir/Patient?_count=1"), (after, "/fhir/Patient?_count=1")])
    ) == [401, 200]


def test_the_demo_keeps_exports_and_feeds_in_its_data_folder(demo_env):
    """Exports and register feeds hold health data: they go with the demo's data (attack
    C-3: they landed in the working directory's data/ whatever --data said)."""
    settings = Settings.from_env()
    for folder in (settings.export_dir, settings.register_out):
        assert Path(folder).resolve().is_relative_to(demo_env.resolve()), folder
