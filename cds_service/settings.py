"""The one typed settings object: defaults, then a TOML file, then `PICU_ENDOTYPE_*` variables.

Precedence (highest first): keyword overrides, environment, the TOML file, the defaults below.
The file comes from `--config FILE` or `PICU_ENDOTYPE_CONFIG`. Nested keys in the environment
use `__` (`PICU_ENDOTYPE_FHIR__TIMEOUT_SECONDS=2`); lists and tables are JSON
(`PICU_ENDOTYPE_CORS_ALLOWED_ORIGINS='["https://sandbox.cds-hooks.org"]'`).
Every key is documented in the README. Invalid settings fail at start-up, never at request time.
"""

from __future__ import annotations

import contextvars
import os
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from fhir_mappings.config import FhirSettings, LocalCode
from fhir_mappings.limits import LimitSettings
from model.context import ContextSettings
from model.phoenix_context import PhoenixSettings
from model.rule_settings import RuleSettings

__all__ = [
    "CONFIG_FILE_ENV",
    "ENV_PREFIX",
    "ClientSettings",
    "FhirSettings",
    "LimitSettings",
    "LocalCode",
    "PathwaySettings",
    "Settings",
    "load_settings",
]

ENV_PREFIX = "PICU_ENDOTYPE_"
CONFIG_FILE_ENV = f"{ENV_PREFIX}CONFIG"
_config_file: contextvars.ContextVar[Path | None] = contextvars.ContextVar(
    "config_file", default=None
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ClientSettings(_Strict):
    """One trusted CDS client (an EHR instance or the sandbox)."""

    iss: str
    jwks_url: str | None = None
    jwks: str | None = None  # inline JWK Set as JSON text
    allowed_jku: list[str] = Field(default_factory=list)
    fhir_servers: list[str] = Field(default_factory=list)
    tenants: list[str] = Field(default_factory=list)
    tenant_required: bool = False

    @model_validator(mode="after")
    def _one_key_source(self) -> ClientSettings:
        if not (self.jwks_url or self.jwks or self.allowed_jku):
            raise ValueError(f"client {self.iss!r}: set jwks_url, jwks or allowed_jku")
        return self


class PathwaySettings(_Strict):
    """Links on every card to the site's pathway documents (absolute https URLs)."""

    standard_url: HttpUrl | None = None
    biomarker_guided_url: HttpUrl | None = None


class AuditSettings(_Strict):
    """The audit trail: one record per hook answered, refused or failed (never a token)."""

    enabled: bool = True
    retention_days: int = Field(400, ge=1)  # older records are purged
    # HMAC-SHA256 key for patient and encounter pseudonyms; required with PostgreSQL
    pseudonym_key: SecretStr | None = None
    pseudonym_key_file: Path | None = None  # default with SQLite: {state_dir}/pseudonym.key


class SilentSettings(_Strict):
    """Silent mode: every hook is computed and audited, cards reach only the pilot users."""

    enabled: bool = False
    pilot_users: list[str] = Field(
        default_factory=list
    )  # context.userId values, e.g. Practitioner/1


class MetricsSettings(_Strict):
    """Prometheus metrics: a separate loopback listener and/or `/metrics` behind a bearer token."""

    host: str = "127.0.0.1"
    port: int | None = Field(None, ge=0, le=65535)  # separate listener started by `serve`
    bearer_token: SecretStr | None = None  # serves GET /metrics on the main port when set

    @field_validator("bearer_token")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("metrics.bearer_token must be at least 16 characters")
        return value


class Settings(BaseSettings):
    """picu-endotype settings. See the README for every key."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    # --- where we are and who may call us (issue: trust) ---
    public_base_url: str = "http://127.0.0.1:8080"  # what `aud` must match; never from the request
    cors_allowed_origins: list[str] = Field(default_factory=list)
    insecure_http_fhir_hosts: list[str] = Field(default_factory=list)  # development only
    clients: list[ClientSettings] = Field(default_factory=list)
    allowed_algorithms: list[str] = Field(default_factory=lambda: ["ES384", "RS384"])
    jwt_leeway_seconds: int = Field(60, ge=0, le=300)
    jwt_max_lifetime_seconds: int = Field(3600, gt=0, le=3600)
    jwks_refresh_min_interval_seconds: float = Field(30.0, ge=0)
    dev_allow_unauthenticated: bool = False  # binds to loopback only; warns at every start

    # --- serving ---
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    workers: int = Field(2, ge=1)
    threads: int = Field(32, ge=1, le=1024)  # hooks in flight per worker process
    header_timeout_seconds: float = Field(10.0, gt=0)  # for a request's line and headers
    body_timeout_seconds: float = Field(30.0, gt=0)  # for its body, once the headers are in
    max_body_bytes: int = Field(1_048_576, gt=0)
    state_dir: Path = Path("var")  # the default SQLite database and pseudonym key live here
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # --- shared state: feedback, JWT replay store, audit trail ---
    database_url: SecretStr | None = None  # default: sqlite:///{state_dir}/picu-endotype.sqlite3
    database_pool_size: int = Field(5, ge=1, le=100)  # connections per process
    migrate_on_start: bool = True  # run the schema migrations when the service starts
    audit: AuditSettings = Field(default_factory=AuditSettings)
    silent: SilentSettings = Field(default_factory=SilentSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)

    # --- data ---
    fhir: FhirSettings = Field(default_factory=FhirSettings)
    local_codes: list[LocalCode] = Field(default_factory=list)
    context: ContextSettings = Field(default_factory=ContextSettings)  # PICU gate and anchor
    phoenix: PhoenixSettings = Field(default_factory=PhoenixSettings)  # Phoenix score and onset
    window_hours: float = Field(48.0, gt=0)  # the early window after the anchor
    current_max_age_hours: float = Field(72.0, gt=0)  # older current state: insufficient data
    max_age_years: float | None = Field(18.0, gt=0)  # "none": no age gate
    limits: LimitSettings = Field(default_factory=LimitSettings)  # reply sizes, nesting, JWKS

    # --- decision and cards ---
    scorer: Literal["rules", "model"] = "rules"
    rules: RuleSettings = Field(default_factory=RuleSettings)  # version 2 (default) or 1
    model_path: Path | None = None  # a site's own skops model; default: the packaged model
    indicator: Literal["info", "warning", "critical"] = "info"
    pathways: PathwaySettings = Field(default_factory=PathwaySettings)
    time_zone: str = "UTC"  # IANA name; card times are shown in it

    @field_validator("max_age_years", mode="before")
    @classmethod
    def _none_means_no_age_gate(cls, value: object) -> object:
        """TOML and the environment have no null: the word "none" switches the age gate off."""
        if isinstance(value, str) and value.strip().lower() == "none":
            return None
        return value

    @field_validator("time_zone")
    @classmethod
    def _known_time_zone(cls, value: str) -> str:
        """An IANA time zone name this machine knows (tzdata)."""
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r}") from None
        return value

    @field_validator("public_base_url")
    @classmethod
    def _strip_trailing_slash(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("public_base_url must be an absolute http(s) URL")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _refuse_unsafe_algorithms(self) -> Settings:
        unsafe = [a for a in self.allowed_algorithms if a == "none" or a.upper().startswith("HS")]
        if unsafe:
            raise ValueError(f"allowed_algorithms may not contain {unsafe}")
        return self

    @model_validator(mode="after")
    def _pseudonym_key_for_shared_database(self) -> Settings:
        """Replicas sharing PostgreSQL must share one pseudonym key: it may not be generated."""
        shared = self.database_url is not None and not self.database_url_text.startswith("sqlite")
        audit = self.audit
        if (
            shared
            and audit.enabled
            and audit.pseudonym_key is None
            and not audit.pseudonym_key_file
        ):
            raise ValueError(
                "audit.pseudonym_key (or audit.pseudonym_key_file) is required when the audit "
                "trail is kept in a shared database"
            )
        return self

    @property
    def database_url_text(self) -> str:
        """The database URL (it may hold a password: never log it)."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"sqlite:///{(self.state_dir / 'picu-endotype.sqlite3').resolve()}"

    @property
    def pseudonym_key_path(self) -> Path:
        return self.audit.pseudonym_key_file or self.state_dir / "pseudonym.key"

    @property
    def model_card_url(self) -> str:
        return f"{self.public_base_url}/model-card"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = _config_file.get()
        if config_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Build settings from an optional TOML file (or `PICU_ENDOTYPE_CONFIG`) and the environment."""
    path = config_file or os.environ.get(CONFIG_FILE_ENV)
    resolved = Path(path) if path else None
    if resolved is not None and not resolved.is_file():
        raise FileNotFoundError(f"settings file not found: {resolved}")
    token = _config_file.set(resolved)
    try:
        return Settings(**overrides)
    finally:
        _config_file.reset(token)
