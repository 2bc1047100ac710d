"""Settings: every one documented, DATABASE_URL parsed, secrets listed for redaction."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.config import Settings

ROOT = Path(__file__).resolve().parents[1]


def test_env_example_and_readme_document_every_setting() -> None:
    example = (ROOT / ".env.example").read_text()
    readme = (ROOT / "README.md").read_text()
    for name in Settings.model_fields:
        assert f"\n{name.upper()}=" in example, f"{name.upper()} missing from .env.example"
        assert f"`{name.upper()}`" in readme, f"{name.upper()} missing from the README"


def test_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AA_API_KEY", "k-123456")
    monkeypatch.setenv("DATABASE_URL", "sqlite:////var/lib/genrelay/jobs.db")
    monkeypatch.setenv("HTTP_PORT", "9000")
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert s.database_path == "/var/lib/genrelay/jobs.db"
    assert s.http_port == 9000
    assert "k-123456" in s.secrets()
    assert "k-123456" not in repr(s)


def test_defaults_match_the_contract() -> None:
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert s.aa_base_url == "http://localhost:8095"
    assert s.database_path == "genrelay.db"
    assert s.telegram_api_base_url == "https://api.telegram.org/bot"
    assert s.discord_api_base_url == "https://discord.com/api/v10"
    assert (s.http_host, s.http_port, s.log_level) == ("127.0.0.1", 8080, "INFO")


def test_a_database_url_of_another_engine_is_refused() -> None:
    with pytest.raises(ValueError, match=r"a postgresql:// URL .* got scheme mysql"):
        Settings(_env_file=None, database_url="mysql://db/genrelay")  # type: ignore[call-arg]
    s = Settings(_env_file=None, database_url="postgresql://db/genrelay")  # type: ignore[call-arg]
    assert s.database_engine == "postgresql"
    with pytest.raises(ValueError, match="not a SQLite file"):
        _ = s.database_path


def test_secrets_include_bot_tokens() -> None:
    s = Settings(  # type: ignore[call-arg]
        _env_file=None, telegram_bot_token=SecretStr("1:abc"), discord_bot_token=SecretStr("d.x.y")
    )
    assert set(s.secrets()) == {"1:abc", "d.x.y"}


def test_discord_shard_count_is_unset_or_at_least_one(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings(_env_file=None).discord_shard_count is None  # type: ignore[call-arg]
    monkeypatch.setenv("DISCORD_SHARD_COUNT", "")
    assert Settings(_env_file=None).discord_shard_count is None  # type: ignore[call-arg]
    monkeypatch.setenv("DISCORD_SHARD_COUNT", "4")
    assert Settings(_env_file=None).discord_shard_count == 4  # type: ignore[call-arg]
    for bad in ("0", "-2", "two", "1.5"):
        monkeypatch.setenv("DISCORD_SHARD_COUNT", bad)
        with pytest.raises(ValueError, match="discord_shard_count"):
            Settings(_env_file=None)  # type: ignore[call-arg]
    assert Settings(_env_file=None, discord_shard_count=None).discord_sync_on_start is False  # type: ignore[call-arg]
