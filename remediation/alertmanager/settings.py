"""Settings of `vigil serve`: where the policy and the databases are, and who may call it."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, Field

MIN_SECRET_BYTES = 16  # a bearer token or basic-auth password shorter than this is refused


class AuthError(ValueError):
    pass


class ServeSettings(BaseModel):
    policy: Path
    audit_db: Path = Path("vigil-audit.db")
    inbox_db: Path = Path("vigil-inbox.db")
    dry_run: bool = True
    # Secrets come from files or the environment, never from the command line.
    bearer_token_file: Path | None = None
    bearer_token_env: str = "VIGIL_WEBHOOK_TOKEN"
    basic_user: str | None = None
    basic_password_file: Path | None = None
    basic_password_env: str = "VIGIL_WEBHOOK_PASSWORD"
    allow_unauthenticated: bool = False  # an explicit opt-out; the default is auth required
    public_docs: bool = False  # /docs, /redoc and /openapi.json without credentials
    # A connection whose request headers have not all arrived this long after it opened (or after
    # its previous request) is closed: slow-header (slowloris) clients cannot hold connections.
    header_timeout_s: float = Field(default=10.0, gt=0, le=300)
    max_body_bytes: int = Field(default=1 << 20, gt=0)
    queue_size: int = Field(default=100_000, gt=0)  # unfinished alerts before 503
    retry_after_s: int = Field(default=5, gt=0)
    engine_nice: int = Field(default=10, ge=0, le=19)  # the engine process's CPU niceness
    inbox_retention_s: float = Field(default=7 * 86_400, gt=0)  # finished alerts kept this long

    def token(self) -> str | None:
        return _secret(self.bearer_token_file, self.bearer_token_env)

    def password(self) -> str | None:
        return _secret(self.basic_password_file, self.basic_password_env)

    def check(self) -> None:
        """Refuse to start without credentials unless unauthenticated access was asked for, and
        refuse a token or password shorter than `MIN_SECRET_BYTES` (16) bytes."""
        if self.allow_unauthenticated:
            return
        token, password = self.token(), self.password()
        if not token and not (self.basic_user and password):
            raise AuthError("no credentials: set a bearer token (bearer_token_file or "
                            f"${self.bearer_token_env}) or basic auth (basic_user and a password "
                            f"file or ${self.basic_password_env}); or allow_unauthenticated")
        for what, value in (("bearer token", token), ("basic-auth password", password)):
            if value and len(value.encode()) < MIN_SECRET_BYTES:
                raise AuthError(f"the {what} is {len(value.encode())} bytes; use at least "
                                f"{MIN_SECRET_BYTES} (e.g. `openssl rand -hex 32`)")


def _secret(path: Path | None, env: str) -> str | None:
    if path is not None:
        value = path.read_text().strip()
        return value or None
    return os.environ.get(env) or None
