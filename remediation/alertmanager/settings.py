"""Settings of `vigil serve`: where the policy and the databases are, who may call it, and the
engine's own settings. `ServeConfig` is the `serve` section of Vigil's one configuration tree
(file, then `VIGIL_SERVE__*` environment, then the command line's flags).

Secrets are never command-line flags: a file (`bearer_token_file`, `basic_password_file`) or the
environment (`VIGIL_SERVE__BEARER_TOKEN`, `VIGIL_SERVE__BASIC_PASSWORD`); they are `SecretStr`,
so no dump or log shows them.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from remediation.engine_settings import EngineSettings

MIN_SECRET_BYTES = 16  # a bearer token or basic-auth password shorter than this is refused


class AuthError(ValueError):
    pass


class ServeConfig(BaseModel):
    """The `serve` section: dry-run unless its engine says otherwise.

    >>> ServeConfig(policy=Path("p.yaml")).engine.dry_run
    True
    """

    model_config = ConfigDict(extra="forbid")

    policy: Path | None = Field(default=None, description="the remediation policy (YAML); "
                                "`vigil serve` needs one")
    host: str = Field(default="127.0.0.1", description='listen address')
    port: int = Field(default=9107, ge=0, le=65535, description='listen port')
    audit_db: Path = Field(default=Path("vigil-audit.db"), description=(
        "the audit database (SQLite, created 0600)"))
    audit_dsn: SecretStr | None = Field(default=None, description=(
        "a PostgreSQL audit shared by replicas on several hosts, instead of audit_db: a "
        "`postgresql://` URI; set it through VIGIL_SERVE__AUDIT_DSN or "
        "audit_dsn_file (the password may also come from PGPASSWORD or ~/.pgpass)"))
    audit_dsn_file: Path | None = Field(default=None, description=(
        "a file holding audit_dsn"))
    inbox_db: Path = Field(default=Path("vigil-inbox.db"), description=(
        "the durable intake of alerts (SQLite, created 0600)"))
    bearer_token_file: Path | None = Field(default=None, description=(
        "a file holding the bearer token callers must send"))
    bearer_token: SecretStr | None = Field(default=None, description="set it through "
                                           "VIGIL_SERVE__BEARER_TOKEN, not in a file")
    basic_user: str | None = Field(default=None, description='the basic-auth user callers may send instead')
    basic_password_file: Path | None = Field(default=None, description=(
        "a file holding the basic-auth password"))
    basic_password: SecretStr | None = Field(default=None, description="set it through "
                                             "VIGIL_SERVE__BASIC_PASSWORD, not in a file")
    allow_unauthenticated: bool = Field(default=False, description="an explicit opt-out; the "
                                        "default is auth required")
    public_docs: bool = Field(default=False, description="/docs, /redoc and /openapi.json "
                              "without credentials")
    header_timeout_s: float = Field(default=10.0, gt=0, le=300, description="a connection whose "
                                    "request headers have not all arrived this long after it "
                                    "opened (or after its previous request) is closed")
    max_body_bytes: int = Field(default=1 << 20, gt=0, description='larger request bodies are refused (413)')
    queue_size: int = Field(default=100_000, gt=0, description="unfinished alerts before 503")
    retry_after_s: int = Field(default=5, gt=0, description='Retry-After of a 503 when the queue is full')
    engine_nice: int = Field(default=10, ge=0, le=19, description="the engine process's CPU "
                             "niceness")
    inbox_retention_s: float = Field(default=7 * 86_400, gt=0, description="finished alerts "
                                     "are kept this long")
    triggers_topic: str | None = Field(default=None, description=(
        "forward each accepted alert's trigger to this Kafka topic (brokers and security from "
        "the `kafka` section) for `vigil remediate`, instead of running an engine here"))
    engine: EngineSettings = Field(default_factory=EngineSettings)

    def token(self) -> str | None:
        return _secret(self.bearer_token_file, self.bearer_token)

    def password(self) -> str | None:
        return _secret(self.basic_password_file, self.basic_password)

    def audit(self) -> Path | str:
        """Where the audit is: the PostgreSQL DSN when one is set, else the SQLite `audit_db`.

        >>> ServeConfig().audit()
        PosixPath('vigil-audit.db')
        >>> ServeConfig(audit_dsn="postgresql://db/vigil").audit()
        'postgresql://db/vigil'
        """
        dsn = _secret(self.audit_dsn_file, self.audit_dsn)
        if dsn is None:
            return self.audit_db
        if not dsn.startswith(("postgresql://", "postgres://")):
            raise AuthError("serve.audit_dsn: not a PostgreSQL URI (postgresql://...)")
        return dsn

    def audit_shown(self) -> str:
        """The audit's location as logs and /readyz show it (no password)."""
        from remediation.audit_pg import redacted

        where = self.audit()
        return redacted(where) if isinstance(where, str) else str(where)

    def policy_path(self) -> Path:
        """The policy file; `AuthError` (a refusal to start) when none is set."""
        if self.policy is None:
            raise AuthError("no policy: give serve.policy (or --policy)")
        return self.policy

    def check(self) -> None:
        """Refuse to start without a policy, without credentials unless unauthenticated access
        was asked for, or with a token or password shorter than `MIN_SECRET_BYTES` (16) bytes."""
        self.policy_path()
        self.audit()  # a DSN that is not one stops the start here
        if self.allow_unauthenticated:
            return
        token, password = self.token(), self.password()
        if not token and not (self.basic_user and password):
            raise AuthError("no credentials: set a bearer token (serve.bearer_token_file or "
                            "$VIGIL_SERVE__BEARER_TOKEN) or basic auth (serve.basic_user and a "
                            "password file or $VIGIL_SERVE__BASIC_PASSWORD); or "
                            "serve.allow_unauthenticated")
        for what, value in (("bearer token", token), ("basic-auth password", password)):
            if value and len(value.encode()) < MIN_SECRET_BYTES:
                raise AuthError(f"the {what} is {len(value.encode())} bytes; use at least "
                                f"{MIN_SECRET_BYTES} (e.g. `openssl rand -hex 32`)")

    def for_engine(self) -> str:
        """This configuration as JSON for the engine process, without the web's secrets (the
        engine needs none of them)."""
        out = self.model_dump(mode="json", exclude={"bearer_token", "basic_password",
                                                    "audit_dsn", "audit_dsn_file"})
        where = self.audit()
        if isinstance(where, str):  # the engine process writes the audit: it needs the DSN
            out["audit_dsn"] = where
        return json.dumps(out)


def _secret(path: Path | None, value: SecretStr | None) -> str | None:
    if path is not None:
        text = path.read_text().strip()
        return text or None
    return value.get_secret_value() if value is not None and value.get_secret_value() else None
