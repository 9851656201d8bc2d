"""The live demo's scenarios: which fault is injected into the local fleet, and the remediation
policy Vigil acts through (written to the run directory, so a person can read and reuse it).

Every action goes through the fleet's control API with the `http` hook, its bearer token read
from the fleet's token file (`${credentials.fleet}`), never from the incident.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from detector.simulate.live.control import FleetHandle

_HTTP = """        hook: http
        params:
          url: "{control}{path}"
          method: POST
          headers: {{Authorization: "Bearer ${{credentials.fleet}}"}}
          expect: [200]
          json: {body}
        timeout_s: 20
"""


def _rung(name: str, path: str, wait_s: float, extra: str = "", body: str = "{}",
          target: str | None = None) -> str:
    head = f"      - name: {name}\n"
    if target is not None:
        head += f"        target: {target}\n"
    return (head + _HTTP.format(control="{control}", path=path, body=body)
            + f"        wait_s: {wait_s:g}\n" + extra)


@dataclass(frozen=True, slots=True)
class Scenario:
    """A fault and the policy that answers it. `inject(fleet)` applies the fault."""

    name: str
    service: str | None  # the service the fault is in (None: fault-free)
    what: str  # in a person's words
    inject: Callable[[FleetHandle], object]
    policy: str  # YAML with {control}, {gateway} and {token} to fill

    def policy_yaml(self, control_url: str, gateway_url: str, token_file: str) -> str:
        return (self.policy.replace("{control}", control_url).replace("{gateway}", gateway_url)
                .replace("{token}", token_file))


_HEAD = """# Written by vigil demo for this run. Every step calls the fleet's control API.
credentials:
  fleet: {{file: "{token}"}}
guards:
  cooldown_s: 300
  budget: {{window_s: 3600, max_actions: 5, max_per_target: 3}}
{guards}rules:
"""

BAD_DEPLOY = Scenario(
    "bad_deploy", "cart", "deploy cart v2 (a bad release: most of its requests raise KeyError)",
    lambda fleet: fleet.deploy("cart", "v2"),
    _HEAD.format(token="{token}", guards="") + """  - name: errors-after-deploy
    match: {source: [detector], kind: [error]}
    ladder:
""" + _rung("rollback", "/services/${trigger.service}/rollback", 45))

OVERLOAD = Scenario(
    "overload", "gateway", "five times the traffic at the gateway (the services behind it are "
    "over capacity and answer 503)",
    lambda fleet: fleet.set_load(200),
    _HEAD.format(token="{token}", guards="") + """  - name: overload
    match: {source: [detector], kind: [error, latency, traffic]}
    ladder:
""" + _rung("throttle", "/services/gateway/throttle", 45, body="{rps: 45}", target="gateway",
            extra="""        verify:   # the traffic stays high (throttled is not gone): the errors must
          resolved: true
          http: {url: "{gateway}/stats", field: error_ratio, below: 0.05, interval_s: 2}
"""))

_RESTART = "/services/${trigger.service}/restart"
CRASH_LOOP = Scenario(
    "crash_loop", "payments", "payments crashes seconds after every start (a crash loop a "
    "restart cannot fix)",
    lambda fleet: fleet.fault("payments", "crash_loop"),
    _HEAD.format(token="{token}", guards="  restart_loop: {max_restarts: 2, window_s: 900}\n")
    + """  - name: crash-loop
    match: {source: [detector], kind: [error, traffic]}
    ladder:
""" + _rung("restart", _RESTART, 15, "        restart: true\n")
    + _rung("restart-again", _RESTART, 15, "        restart: true\n")
    + _rung("restart-once-more", _RESTART, 15, "        restart: true\n"))

NONE = Scenario("none", None, "no fault (a fault-free run: Vigil should do nothing)",
                lambda fleet: None, BAD_DEPLOY.policy)

SCENARIOS = {s.name: s for s in (BAD_DEPLOY, OVERLOAD, CRASH_LOOP, NONE)}
