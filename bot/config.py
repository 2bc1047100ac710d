"""Settings: one typed object, read from the environment and `.env`, built once in __main__."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.catalog import Catalog, default_specs
from bot.constants import MAX_REFERENCE_BYTES, RESULT_MAX_BYTES

__all__ = ["Settings"]


class Settings(BaseSettings):
    """Every setting of the service. Field names are the environment variables, upper-cased."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # Gateways
    aa_base_url: str = "http://localhost:8095"
    aa_api_key: SecretStr | None = None
    gateway_timeout_s: float = 30.0
    sync_timeout_s: float = 300.0  # GPT Image 2 blocks until the image exists

    # Storage
    database_url: str = "sqlite:///genrelay.db"
    data_dir: Path = Path("genrelay-data")  # hosted reference images and downloaded results

    # Chat platforms
    telegram_bot_token: SecretStr | None = None
    telegram_api_base_url: str = "https://api.telegram.org/bot"
    telegram_file_base_url: str = "https://api.telegram.org/file/bot"
    telegram_upload_limit_mb: int = 50
    discord_bot_token: SecretStr | None = None
    discord_api_base_url: str = "https://discord.com/api/v10"
    discord_gateway_url: str | None = None

    # Our HTTP server
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    public_base_url: str | None = None

    log_level: str = "INFO"

    # Models
    default_image_model: str = "nanobanana"
    default_video_model: str = "veo_fast"
    model_prices: str = ""  # "veo=0.5,veo_fast=0.25": overrides of the catalog's prices in USD
    image_deadline_s: float = 600.0
    video_deadline_s: float = 1800.0

    # Tracking and delivery
    poll_first_delay_s: float = 3.0
    poll_interval_s: float = 5.0
    tracker_concurrency: int = Field(default=64, ge=1)
    sync_concurrency: int = Field(default=16, ge=1)
    delivery_max_attempts: int = Field(default=8, ge=1)
    progress_interval_s: float = 3.0
    max_reference_bytes: int = MAX_REFERENCE_BYTES
    result_max_bytes: int = RESULT_MAX_BYTES

    @field_validator("public_base_url")
    @classmethod
    def _strip_slash(cls, v: str | None) -> str | None:
        return v.rstrip("/") if v else None

    @property
    def database_path(self) -> str:
        """The SQLite file of DATABASE_URL (`sqlite:///rel.db`, `sqlite:////abs.db`)."""
        url = self.database_url
        for prefix in ("sqlite+aiosqlite:///", "sqlite:///"):
            if url.startswith(prefix):
                return url[len(prefix) :] or "genrelay.db"
        if "://" in url:
            raise ValueError(
                f"DATABASE_URL must be a sqlite:/// URL, got scheme {url.split(':')[0]}"
            )
        return url

    def prices(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for item in filter(None, (p.strip() for p in self.model_prices.split(","))):
            code, _, price = item.partition("=")
            out[code.strip()] = float(price)
        return out

    def build_catalog(self) -> Catalog:
        return Catalog(
            default_specs(
                image_deadline_s=self.image_deadline_s, video_deadline_s=self.video_deadline_s
            ),
            prices=self.prices(),
            default_image=self.default_image_model,
            default_video=self.default_video_model,
        )

    def secrets(self) -> list[str]:
        """Every secret value, for the log filter."""
        return [
            s.get_secret_value()
            for s in (self.aa_api_key, self.telegram_bot_token, self.discord_bot_token)
            if s is not None and s.get_secret_value()
        ]
