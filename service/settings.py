"""Service settings from the environment (prefix `CODER_`) or a `.env` file."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything an operator can set. `CODER_ARTIFACT=/models/linear` serves that artifact."""

    model_config = SettingsConfigDict(env_prefix="CODER_", env_file=".env", extra="ignore")

    artifact: str | None = Field(
        None, description="artifact directory to serve until an admin activates another; unset: the embedded default"
    )
    models_dir: str = Field("artifacts", description="folder whose artifact subfolders an admin can switch between")
    database_url: str = Field(
        "sqlite:///data/coder.db",
        description="SQLAlchemy URL; e.g. postgresql://user@host:5432/db (psycopg 3) in production",
    )
    auto_migrate: bool = Field(True, description="run the database migrations at start-up")
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = Field(1, ge=1, description="uvicorn worker processes")
    keep_alive_seconds: int = Field(
        65, ge=1, description="idle keep-alive connections are closed after this; longer than clients' and load "
        "balancers' own idle timeouts, so a client never sends on a connection the server is closing",
    )
    max_body_bytes: int = Field(2_000_000, description="larger request bodies are refused with 413")
    max_batch_notes: int = Field(64, ge=1, description="most notes in one batch request")
    default_top_k: int = 10
    valid_codes_only: bool = Field(
        True, description="return only codes of the ICD-10-CM FY2026 / ICD-10-PCS catalogue (a CodiEsp-trained "
        "model also knows CIE10-2018 codes)"
    )
    runtime: Literal["auto", "onnx", "torch"] = Field(
        "auto", description="the transformer's runtime: onnx (the exported, int8 encoder), torch (the reference), "
        "auto (onnx when the artifact has the export)",
    )
    head_precision: Literal["auto", "int8", "float32", "bfloat16"] = Field(
        "auto", description="the onnx runtime's label-attention head: int8 (ONNX Runtime, built at load; auto is "
        "int8), or float32 or bfloat16 (PyTorch)",
    )
    # Measured on 2 cores with the hybrid (8 clients, `eval.serve_bench --batch-max-notes N`): AMD EPYC
    # (3b8f375), 2, 4 and 8 notes a pass gave 29.6, 28.4 and 28.3 notes/s; Intel Xeon (ff73243), 1, 2, 4
    # and 8 all gave 14-17, within the noise. Larger passes gain little on a CPU. No wait, so a lone note
    # is not delayed.
    batch_max_notes: int = Field(4, ge=1, description="most notes of concurrent requests the transformer "
                                 "scores in one pass (those that arrived while it was busy)")
    batch_wait_ms: float = Field(0.0, ge=0, description="how long a note waits for others to share its pass")
    claim_lease_seconds: int = Field(900, ge=1, description="how long a coder holds a claimed review item")
    queue_order: Literal["priority", "oldest", "newest"] = Field(
        "priority", description="default review-queue order: priority = least confident first, then oldest"
    )
    model_sync_seconds: float = Field(5.0, gt=0, description="how often a worker checks which model to serve")
    cors_origins: list[str] = Field(
        default_factory=list,
        description="origins allowed to call the API from a browser (JSON list); empty: no cross-origin access",
    )
    log_level: str = "INFO"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process settings (a test overrides this dependency to give others)."""
    return Settings()
