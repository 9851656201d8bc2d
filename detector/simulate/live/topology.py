"""Who calls whom in the live fleet, which operations each service serves and how long its own
work takes. Data only: no processes, no sockets."""

from __future__ import annotations

SERVICES = ("gateway", "cart", "catalog", "payments", "db")
# The edges: gateway -> cart, catalog; cart -> payments, db; catalog -> db.
CALLS: dict[str, tuple[str, ...]] = {
    "gateway": ("cart", "catalog"),
    "cart": ("payments", "db"),
    "catalog": ("db",),
}
# Per service and operation, the downstream calls it makes, in order, as (service, operation).
ROUTES: dict[str, dict[str, tuple[tuple[str, str], ...]]] = {
    "gateway": {
        "home": (("catalog", "list_products"),),
        "product": (("catalog", "get_product"),),
        "cart": (("cart", "get_cart"),),
        "checkout": (("cart", "checkout"),),
    },
    "cart": {
        "get_cart": (("db", "select_cart"),),
        "checkout": (("payments", "charge"), ("db", "insert_order")),
    },
    "catalog": {
        "list_products": (("db", "select_products"),),
        "get_product": (),
    },
    "payments": {"charge": ()},
    "db": {"select_cart": (), "insert_order": (), "select_products": ()},
}
# The gateway's traffic mix: (operation, share).
ENTRY_MIX: tuple[tuple[str, float], ...] = (
    ("home", 0.30), ("product", 0.20), ("cart", 0.25), ("checkout", 0.25),
)
# Median of a service's own work in ms (a sleep, not CPU: the demo shares two cores with Vigil).
OWN_MS: dict[str, float] = {"gateway": 1.5, "cart": 3.0, "catalog": 4.0, "payments": 12.0, "db": 2.0}
DEFAULT_OWN_MS = 3.0
# Concurrent requests a service handles before it degrades: above the gateway's ~1 in flight at
# 40 rps, below what five times that load keeps in flight.
DEFAULT_CAPACITY = 6
BAD_VERSIONS = frozenset({"v2"})  # versions that ship the KeyError


def calls_of(service: str, names: tuple[str, ...]) -> tuple[str, ...]:
    """The downstreams of `service` among the fleet's `names`.

    >>> calls_of("cart", ("gateway", "cart", "db"))
    ('db',)
    """
    return tuple(c for c in CALLS.get(service, ()) if c in names)
