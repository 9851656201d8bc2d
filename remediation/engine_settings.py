"""The remediation engine's settings: light to import, so the configuration tree can name them."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class EngineSettings(BaseModel):
    """The remediation engine's settings (`serve.engine` in Vigil's configuration)."""

    model_config = ConfigDict(extra="forbid")

    dry_run: bool = Field(default=True, description="record what would be done, run no hook; "
                          "acting needs an explicit false (`vigil serve --act`)")
    seed: int | None = Field(default=None, description="retry jitter seed (tests pin it)")
    claim_memory_s: float = Field(default=30 * 86_400, gt=0, description="how far back an alert "
                                  "episode is recognised on start")
    episode_memory_s: float = Field(default=3600.0, gt=0, description="finished episodes are "
                                    "forgotten after this long (a later resend is still refused "
                                    "by its durable claim, and audited)")
    live_checks: bool = Field(default=True, description="run a rung's http and promql checks "
                              "and send pages; false for a what-if replay of history (live services "
                              "are not what history saw): only the alert's resolution verifies a "
                              "step, and a page is recorded, not sent")
