"""Service settings from the environment (prefix `CODER_`) or a `.env` file."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything an operator can set. `CODER_ARTIFACT=/models/linear` serves that artifact."""

    model_config = SettingsConfigDict(env_prefix="CODER_", env_file=".env", extra="ignore")

    artifact: str | None = Field(None, description="artifact directory to serve; unset: the embedded default")
    host: str = "127.0.0.1"
    port: int = 8000
    max_body_bytes: int = Field(2_000_000, description="larger request bodies are refused with 413")
    default_top_k: int = 10
    valid_codes_only: bool = Field(
        True, description="return only codes of the ICD-10-CM FY2026 / ICD-10-PCS catalogue (a CodiEsp-trained "
        "model also knows CIE10-2018 codes)"
    )
    log_level: str = "INFO"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process settings (a test overrides this dependency to give others)."""
    return Settings()
