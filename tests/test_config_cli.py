"""Settings are data, documented, validated with clear messages; the CLI basics."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from mailtrack.cli import main
from mailtrack.config import SETTINGS, load_config, parse_duration, parse_transport_map
from mailtrack.errors import ConfigError

README = Path(__file__).resolve().parents[1] / "README.md"


def test_every_setting_is_documented_in_the_readme() -> None:
    text = README.read_text()
    missing = [s.name for s in SETTINGS if f"MAILTRACK_{s.name}" not in text]
    assert not missing, f"undocumented settings: {missing}"
    for s in SETTINGS:
        assert s.help.strip(), s.name


def test_defaults_parse() -> None:
    cfg = load_config(env={})
    assert cfg.http == ("127.0.0.1", 8000)
    assert cfg.database_url.startswith("sqlite:///")
    assert cfg.max_queue_age == 5 * 86400
    assert cfg.transport_map == {"*": "mx"}


def test_invalid_settings_are_named_in_one_message() -> None:
    with pytest.raises(ConfigError) as e:
        load_config(env={"MAILTRACK_HTTP": "nope", "MAILTRACK_MAX_QUEUE_AGE": "forever"})
    assert "MAILTRACK_HTTP" in str(e.value) and "MAILTRACK_MAX_QUEUE_AGE" in str(e.value)


def test_toml_file_and_env_precedence(tmp_path: Path) -> None:
    f = tmp_path / "mt.toml"
    f.write_text('http = "127.0.0.1:9001"\nbounce_domain = "b.example"\n')
    cfg = load_config(env={"MAILTRACK_BOUNCE_DOMAIN": "env.example"}, file=f)
    assert cfg.http == ("127.0.0.1", 9001) and cfg.bounce_domain == "env.example"
    f.write_text('htp = "x"\n')
    with pytest.raises(ConfigError, match="unknown setting"):
        load_config(env={}, file=f)


@pytest.mark.parametrize("text,seconds", [("250ms", 0.25), ("5s", 5), ("5m", 300), ("1h", 3600), ("5d", 432000), ("7", 7)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_transport_map() -> None:
    assert parse_transport_map("example.test=127.0.0.1:2526, *=mx") == {"example.test": "127.0.0.1:2526", "*": "mx"}
    with pytest.raises(ValueError):
        parse_transport_map("example.test")


def test_apikey_create_prints_key_alone_on_last_line(tmp_path: Path) -> None:
    env = {"MAILTRACK_DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite", "MAILTRACK_SECRET_KEY": "k"}
    r = CliRunner().invoke(main, ["apikey", "create", "--account", "acme"], env=env)
    assert r.exit_code == 0, r.output
    last = r.output.strip().splitlines()[-1]
    assert re.fullmatch(r"mt_[A-Za-z0-9_-]{40,}", last)


def test_settings_command_lists_every_setting() -> None:
    r = CliRunner().invoke(main, ["settings"], env={})
    assert r.exit_code == 0
    for s in SETTINGS:
        assert f"MAILTRACK_{s.name}" in r.output


def test_bad_setting_at_start_is_a_message_not_a_traceback(tmp_path: Path) -> None:
    env = {"MAILTRACK_HTTP": "not-a-port", "MAILTRACK_DATABASE_URL": f"sqlite:///{tmp_path}/x.db", "PATH": ""}
    r = subprocess.run([sys.executable, "-m", "mailtrack.cli", "serve"], env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode != 0
    assert "MAILTRACK_HTTP" in r.stderr and "Traceback" not in r.stderr


def test_unsupported_database_url_is_a_clear_error(tmp_path: Path) -> None:
    env = {"MAILTRACK_DATABASE_URL": "mysql://x/y", "PATH": ""}
    r = subprocess.run([sys.executable, "-m", "mailtrack.cli", "apikey", "create", "--account", "a"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "unsupported MAILTRACK_DATABASE_URL" in r.stderr and "Traceback" not in r.stderr
