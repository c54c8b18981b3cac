"""Settings are declared once: the `serve` command and the configuration table of
docs/operations.md come from them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import typer.main
from typer.testing import CliRunner

from pinbase.cli import app
from pinbase.config import Settings, declared, markdown_table

OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def serve_command() -> Any:
    """The click command typer builds for `serve`."""
    return typer.main.get_command(app).commands["serve"]  # type: ignore[attr-defined]


def parse(args: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """What `pinbase serve ARGS` would run with, without running it."""
    import os

    saved = dict(os.environ)
    try:
        for key in [k for k in os.environ if k.startswith("PINBASE_")]:
            del os.environ[key]
        os.environ.update(env or {})
        context = serve_command().make_context("serve", args)
        return dict(context.params)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def test_the_documented_table_is_the_declared_settings() -> None:
    text = OPERATIONS.read_text()
    found = re.search(r"<!-- settings:begin -->\n(.*?)<!-- settings:end -->", text, re.S)
    assert found is not None, "the configuration table markers of docs/operations.md are missing"
    assert found.group(1) == markdown_table()


def test_every_setting_is_a_serve_option_with_its_variable() -> None:
    options = {p.name: p for p in serve_command().params}
    assert set(options) == {item.name for item in declared()}
    for item in declared():
        option = options[item.name]
        assert option.opts == [item.flag]
        assert option.envvar == item.env
        assert option.help == item.option.help


def test_defaults_are_the_declared_ones() -> None:
    assert Settings(**parse([])) == Settings()


def test_flags_win_over_the_environment_which_wins_over_defaults() -> None:
    env = {"PINBASE_PORT": "9000", "PINBASE_MQTT_PORT": "0", "PINBASE_LOG_LEVEL": "debug"}
    settings = Settings(**parse(["--port", "9100"], env))
    assert settings.port == 9100
    assert settings.mqtt_port == 0
    assert settings.log_level == "debug"
    assert settings.hardware_port == Settings().hardware_port


def test_a_bad_value_is_a_usage_error_naming_the_option() -> None:
    for args, flag in (
        (["--log-level", "chatty"], "--log-level"),
        (["--port", "eighty"], "--port"),
    ):
        result = CliRunner().invoke(app, ["serve", *args])
        assert result.exit_code == 2
        assert flag in result.output and "Traceback" not in result.output


def test_the_database_url_defaults_to_the_file_in_the_data_dir(tmp_path: Path) -> None:
    assert Settings(data_dir=tmp_path).database_url == f"sqlite:///{tmp_path / 'pinbase.db'}"
    url = "postgresql://pinbase@db/pinbase"
    assert Settings(data_dir=tmp_path, database=url).database_url == url
