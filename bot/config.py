"""Settings: one typed object, read from the environment and `.env`, built once in __main__."""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "ADAPTER_RETRY_FIRST_S",
    "ADAPTER_RETRY_MAX_S",
    "AGGREGATOR_PREFIX",
    "GALLERY_KEEP_DAYS",
    "MAX_REFERENCE_BYTES",
    "RESULT_MAX_BYTES",
    "SHUTDOWN_GRACE_S",
    "SQLITE_BUSY_TIMEOUT_MS",
    "AggregatorModel",
    "Settings",
    "aggregator_name",
    "parse_pairs",
]

# Defaults of the settings below that are numbers worth a name (config imports nothing of
# the project, so they live here rather than in bot/constants.py).
MAX_REFERENCE_BYTES = 20 * 1024 * 1024
RESULT_MAX_BYTES = 200 * 1024 * 1024
ADAPTER_RETRY_FIRST_S = 1.0  # a chat platform that did not answer at start: first wait
ADAPTER_RETRY_MAX_S = 60.0  # ... doubling up to this
SQLITE_BUSY_TIMEOUT_MS = 5000  # how long one SQLite statement waits for another process's lock
SHUTDOWN_GRACE_S = 30.0  # on SIGTERM, how long submits and deliveries in flight may finish
GALLERY_KEEP_DAYS = 30.0  # a session's result files stay for its gallery this long after its end

AGGREGATOR_PREFIX = "agg:"  # every aggregator model also answers to agg:<name>
_SQLITE_SCHEMES = ("sqlite", "sqlite+aiosqlite")
_POSTGRES_SCHEMES = ("postgresql", "postgres")

# What Telegram takes as a webhook's secret_token: 1-256 of these characters.
_WEBHOOK_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")
# A webhook path we serve as it is written (no aiohttp {variable}, nothing to decode).
_WEBHOOK_PATH = re.compile(r"/[A-Za-z0-9/_.~-]*")


def aggregator_name(name: str) -> str:
    """A model name as the aggregator knows it: trimmed, without `agg:`."""
    name = name.strip()
    return name[len(AGGREGATOR_PREFIX) :] if name.lower().startswith(AGGREGATOR_PREFIX) else name


def parse_pairs(text: str) -> dict[str, str]:
    """`"flux=0.03, qwen-image=0.02"` as a dict; keys lower-cased, `agg:` dropped."""
    out: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ValueError(f"expected name=value, got {item!r}")
        out[aggregator_name(key).lower()] = value.strip()
    return out


@dataclass(frozen=True, slots=True)
class AggregatorModel:
    """One model of AGGREGATOR_MODELS with what AGGREGATOR_KINDS, _NAMES and _PRICES say of
    it (None: not given)."""

    name: str  # as the aggregator knows it
    kind: Literal["image", "video"]
    display: str | None
    price_usd: float | None


class Settings(BaseSettings):
    """Every setting of the service. Field names are the environment variables, upper-cased."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # Gateways
    aa_base_url: str = "http://localhost:8095"
    aa_api_key: SecretStr | None = None
    gateway_timeout_s: float = 30.0
    sync_timeout_s: float = 300.0  # GPT Image 2 blocks until the image exists
    # Gateway B, the OpenAI-compatible aggregator: its models join the catalog when
    # AGGREGATOR_MODELS is set. A name the AA gateway already uses becomes agg:<name>.
    aggregator_base_url: str | None = None
    aggregator_api_key: SecretStr | None = None  # sent as `Authorization: <key>`, no Bearer
    aggregator_models: str = ""  # "nano-banana-2,flux,qwen-image"
    aggregator_prices: str = ""  # "flux=0.03,qwen-image=0.02" (USD; default 0.04)
    aggregator_names: str = ""  # "flux=Flux Pro" (display names; defaults from the name)
    aggregator_kinds: str = ""  # "some-model=video" (default image)
    aggregator_submit_path: str = "/v1/images/generations"  # its example URL: /v1/images/edits
    aggregator_task_path: str = "/v1/images/tasks/{task_id}"

    # Storage
    database_url: str = "sqlite:///genrelay.db"
    data_dir: Path = Path("genrelay-data")  # hosted reference images and downloaded results
    # Result files of a creative session's entries are kept for its gallery this long after
    # the session ended (gateway result links expire).
    gallery_keep_days: float = Field(default=GALLERY_KEEP_DAYS, gt=0)

    # Chat platforms
    telegram_bot_token: SecretStr | None = None
    telegram_api_base_url: str = "https://api.telegram.org/bot"
    telegram_file_base_url: str = "https://api.telegram.org/file/bot"
    telegram_upload_limit_mb: int = 50
    telegram_ack_reaction: str = "👀"  # set on a command's message at once; empty: none
    # A group with more running jobs than this shows newer ones on one status board.
    telegram_status_board_after: int = Field(default=2, ge=0)
    # Webhook mode: Telegram posts updates to this public URL, whose path our HTTP server
    # serves (a load balancer maps the host to it); unset: long polling.
    telegram_webhook_url: str | None = None
    # The secret Telegram sends with each update; unset: derived from the token and the URL.
    telegram_webhook_secret: SecretStr | None = None
    discord_bot_token: SecretStr | None = None
    discord_api_base_url: str = "https://discord.com/api/v10"
    discord_gateway_url: str | None = None
    # Gateway shards (discord.py's AutoShardedClient), shared between replicas; None: one
    # connection, unsharded, as Discord serves a bot in under 2,500 servers.
    discord_shard_count: int | None = Field(default=None, ge=1)
    # Register the slash commands globally when the connection holding shard 0 (or the only
    # one) starts; off: `genrelay discord sync` does it.
    discord_sync_on_start: bool = False
    # A platform that does not answer at start is tried again: first wait, doubling to max.
    adapter_retry_first_s: float = Field(default=ADAPTER_RETRY_FIRST_S, gt=0)
    adapter_retry_max_s: float = Field(default=ADAPTER_RETRY_MAX_S, gt=0)

    # Our HTTP server
    http_host: str = "127.0.0.1"
    http_port: int | None = 8080  # empty or "off": no HTTP server
    public_base_url: str | None = None

    log_level: str = "INFO"

    # Models
    default_image_model: str = "nanobanana"
    default_video_model: str = "veo_fast"
    model_prices: str = ""  # "veo=0.5,veo_fast=0.25": overrides of the catalog's prices in USD
    image_deadline_s: float = 600.0
    video_deadline_s: float = 1800.0

    # Community limits (defaults; chat admins change their chat's with /settings)
    user_concurrent_jobs: int = Field(default=2, ge=1)
    user_daily_images: int = Field(default=50, ge=0)
    user_daily_videos: int = Field(default=10, ge=0)
    chat_concurrent_jobs: int = Field(default=3, ge=1)
    chat_daily_budget_usd: float = Field(default=10.0, ge=0)  # 0 = no chat budget
    global_daily_budget_usd: float = Field(default=100.0, ge=0)  # 0 = no service budget
    video_needs_confirmation: bool = False
    confirm_timeout_s: float = 300.0
    operator_ids: str = ""  # "telegram:123,discord:456": may change any chat's settings

    # Tracking and delivery
    poll_policy: Literal["adaptive", "fixed"] = "adaptive"
    poll_first_delay_s: float = 3.0
    poll_interval_s: float = 5.0
    poll_max_gap_s: float = Field(default=150.0, gt=0)
    tracker_concurrency: int = Field(default=64, ge=1)
    sync_concurrency: int = Field(default=16, ge=1)
    delivery_max_attempts: int = Field(default=8, ge=1)
    progress_interval_s: float = 3.0
    max_reference_bytes: int = MAX_REFERENCE_BYTES
    result_max_bytes: int = RESULT_MAX_BYTES
    # How long one write waits for another process's lock on the SQLite file before the
    # store logs that it is busy and keeps trying with backoff
    database_busy_timeout_s: float = Field(default=SQLITE_BUSY_TIMEOUT_MS / 1000, gt=0)
    # On SIGTERM/SIGINT: how long submits and uploads in flight may finish
    shutdown_grace_s: float = Field(default=SHUTDOWN_GRACE_S, ge=0)

    @field_validator("discord_shard_count", mode="before")
    @classmethod
    def _blank_is_unset(cls, v: object) -> object:
        return None if isinstance(v, str) and not v.strip() else v

    @field_validator("public_base_url")
    @classmethod
    def _strip_slash(cls, v: str | None) -> str | None:
        return v.rstrip("/") if v else None

    @field_validator("http_port", mode="before")
    @classmethod
    def _port_off(cls, v: Any) -> Any:
        return None if isinstance(v, str) and v.strip().lower() in ("", "off") else v

    @field_validator("telegram_webhook_url")
    @classmethod
    def _webhook_url(cls, v: str | None) -> str | None:
        if not v or not v.strip():
            return None
        v = v.strip()
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be a URL such as https://bot.example.org/telegram/hook")
        path = parts.path or "/"
        if not _WEBHOOK_PATH.fullmatch(path) or any(s in f"{path}/" for s in ("//", "/./", "/../")):
            raise ValueError("its path may hold only letters, digits, / and - _ . ~")
        return v

    @field_validator("telegram_webhook_secret")
    @classmethod
    def _webhook_secret(cls, v: SecretStr | None) -> SecretStr | None:
        if v is None or not v.get_secret_value():
            return None
        if not _WEBHOOK_SECRET.fullmatch(v.get_secret_value()):
            raise ValueError("must be 1 to 256 of A-Z, a-z, 0-9, _ and - (as Telegram takes it)")
        return v

    @property
    def telegram_webhook_path(self) -> str | None:
        """The path of TELEGRAM_WEBHOOK_URL, which our HTTP server serves; None: polling."""
        if self.telegram_webhook_url is None:
            return None
        return urlsplit(self.telegram_webhook_url).path or "/"

    def telegram_webhook_secret_token(self) -> str | None:
        """The secret_token of Telegram's webhook: TELEGRAM_WEBHOOK_SECRET, else HMAC-SHA256
        of the URL keyed by the bot token (hex), the same in every replica with the same
        settings and no clue to the token. None outside webhook mode."""
        if self.telegram_webhook_url is None or self.telegram_bot_token is None:
            return None
        if self.telegram_webhook_secret is not None:
            return self.telegram_webhook_secret.get_secret_value()
        key = self.telegram_bot_token.get_secret_value().encode()
        return hmac.new(key, self.telegram_webhook_url.encode(), hashlib.sha256).hexdigest()

    @property
    def gallery_keep_s(self) -> float:
        return self.gallery_keep_days * 86400

    @field_validator("database_url")
    @classmethod
    def _known_engine(cls, v: str) -> str:
        # The message names the scheme only: the URL may hold a password.
        scheme = v.split("://", 1)[0].lower() if "://" in v else "sqlite"
        if scheme not in _SQLITE_SCHEMES + _POSTGRES_SCHEMES:
            raise ValueError(
                "must be a sqlite:/// URL (one machine) or a postgresql:// URL (several"
                f" replicas), got scheme {scheme}"
            )
        return v

    @property
    def database_engine(self) -> Literal["sqlite", "postgresql"]:
        """Which job store DATABASE_URL names."""
        scheme = self.database_url.split("://", 1)[0].lower()
        return "postgresql" if scheme in _POSTGRES_SCHEMES else "sqlite"

    @property
    def database_path(self) -> str:
        """The SQLite file of DATABASE_URL (`sqlite:///rel.db`, `sqlite:////abs.db`)."""
        url = self.database_url
        if self.database_engine != "sqlite":
            raise ValueError("DATABASE_URL names a PostgreSQL database, not a SQLite file")
        for prefix in ("sqlite+aiosqlite:///", "sqlite:///"):
            if url.startswith(prefix):
                return url[len(prefix) :] or "genrelay.db"
        return url

    def _database_passwords(self) -> list[str]:
        """The password of a postgresql:// DATABASE_URL (`user:pw@` or `?password=`), as
        written and decoded."""
        if self.database_engine != "postgresql":
            return []
        parts = urlsplit(self.database_url)
        try:
            found = [parts.password or ""]
        except ValueError:
            found = []
        found += parse_qs(parts.query).get("password", [])
        return sorted({v for p in found if p for v in (p, unquote(p))})

    def prices(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for item in filter(None, (p.strip() for p in self.model_prices.split(","))):
            code, _, price = item.partition("=")
            out[code.strip()] = float(price)
        return out

    @property
    def aggregator_enabled(self) -> bool:
        return bool(self.aggregator_models.strip())

    @model_validator(mode="after")
    def _check_aggregator(self) -> Settings:
        if self.aggregator_enabled:
            if not self.aggregator_base_url:
                raise ValueError("AGGREGATOR_MODELS is set but AGGREGATOR_BASE_URL is not")
            if "{task_id}" not in self.aggregator_task_path:
                raise ValueError("AGGREGATOR_TASK_PATH must contain {task_id}")
            self.aggregator_entries()  # refuses bad AGGREGATOR_KINDS / _PRICES / _NAMES now
        return self

    def aggregator_entries(self) -> list[AggregatorModel]:
        """AGGREGATOR_MODELS, each once, with its overrides; ValueError names a bad one."""
        if not self.aggregator_enabled:
            return []
        kinds = parse_pairs(self.aggregator_kinds)
        names = parse_pairs(self.aggregator_names)
        prices = parse_pairs(self.aggregator_prices)
        entries: list[AggregatorModel] = []
        seen: set[str] = set()
        for raw in self.aggregator_models.split(","):
            name = aggregator_name(raw)
            key = name.lower()
            if not name or key in seen:
                continue
            seen.add(key)
            kind_text = kinds.get(key, "image").strip().lower()
            if kind_text not in ("image", "video"):
                raise ValueError(f"AGGREGATOR_KINDS: {name} must be image or video")
            kind: Literal["image", "video"] = "video" if kind_text == "video" else "image"
            try:
                price = float(prices[key]) if key in prices else None
            except ValueError:
                raise ValueError(f"AGGREGATOR_PRICES: {name} needs a number") from None
            entries.append(AggregatorModel(name, kind, names.get(key), price))
        return entries

    def secrets(self) -> list[str]:
        """Every secret value, for the log filter (DATABASE_URL's password and the
        webhook secret too)."""
        keys = [
            s.get_secret_value()
            for s in (
                self.aa_api_key,
                self.aggregator_api_key,
                self.telegram_bot_token,
                self.discord_bot_token,
            )
            if s is not None and s.get_secret_value()
        ]
        webhook = self.telegram_webhook_secret_token()
        return keys + self._database_passwords() + ([webhook] if webhook else [])
