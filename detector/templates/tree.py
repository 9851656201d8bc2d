"""Drain's fixed-depth prefix tree: it routes a token list to a leaf of candidate templates, and
finds the most similar candidate with one vectorised comparison.

A leaf is keyed by the token count and the first `depth - 2` tokens (a token with a digit, or one
past `max_children` siblings, routes as `<*>`). Each leaf keeps its templates' tokens as rows of
64-bit token hashes, so comparing a message with every candidate is one numpy expression,
however many there are; a leaf holds at most `max_leaf` templates (the caller evicts one when it
is full), and a leaf left empty is pruned with its empty parents, so the tree never outgrows the
templates it holds. Knows nothing of counts, caches or ids: `templates.TemplateMiner` does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

WILDCARD = "<*>"


@dataclass(slots=True, eq=False)
class Leaf:
    path: tuple[object, ...]  # the keys from the root to this leaf
    slots: list[int] = field(default_factory=list)
    rows: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros((0, 0), np.int64))

    def __len__(self) -> int:
        return len(self.slots)


def token_hashes(tokens: list[str]) -> npt.NDArray[np.int64]:
    return np.fromiter(map(hash, tokens), dtype=np.int64, count=len(tokens))


class TemplateTree:
    """Leaves of candidate template slots for token lists.

    >>> t = TemplateTree(depth=4, max_children=100, max_leaf=8)
    >>> leaf = t.route("user <NUM> logged in".split())
    >>> t.add(leaf, 0, "user <NUM> logged in".split())
    >>> t.closest(leaf, "user <NUM> logged out".split())
    (0, 0.75)
    >>> t.remove(0); t.leaves
    0
    """

    def __init__(self, depth: int, max_children: int, max_leaf: int) -> None:
        self.depth = depth
        self.max_children = max_children
        self.max_leaf = max_leaf
        self._root: dict[object, dict[object, object]] = {}
        self._leaf_of: dict[int, Leaf] = {}  # slot -> its leaf
        self.leaves = 0

    def route(self, tokens: list[str]) -> Leaf:
        """The leaf for `tokens`, created (with its nodes) when missing."""
        node: dict[object, object] = self._root.setdefault(len(tokens), {})
        path: list[object] = [len(tokens)]
        for tok in tokens[: max(self.depth - 2, 0)]:
            key = WILDCARD if any(c.isdigit() for c in tok) else tok
            child = node.get(key)
            if child is None:
                if len(node) >= self.max_children:
                    key = WILDCARD
                    child = node.get(key)
                if child is None:
                    child = node[key] = {}
            node = child  # type: ignore[assignment]
            path.append(key)
        leaf = node.get("")
        if leaf is None:
            leaf = node[""] = Leaf(tuple(path), rows=np.zeros((0, len(tokens)), np.int64))
            self.leaves += 1
        assert isinstance(leaf, Leaf)
        return leaf

    def closest(self, leaf: Leaf, tokens: list[str]) -> tuple[int, float]:
        """(slot, share of equal tokens) of the most similar template in `leaf`; (-1, -1.0)
        when it is empty. Ties go to the template added first."""
        if not leaf.slots:
            return -1, -1.0
        if not tokens:
            return leaf.slots[0], 1.0
        same = (leaf.rows[: len(leaf)] == token_hashes(tokens)).sum(axis=1)
        best = int(np.argmax(same))
        return leaf.slots[best], float(same[best]) / len(tokens)

    def add(self, leaf: Leaf, slot: int, tokens: list[str]) -> None:
        if len(leaf) >= len(leaf.rows):  # grow by doubling: adding stays amortised O(tokens)
            grown = np.zeros((max(4, 2 * len(leaf.rows)), len(tokens)), np.int64)
            grown[: len(leaf)] = leaf.rows[: len(leaf)]
            leaf.rows = grown
        leaf.rows[len(leaf)] = token_hashes(tokens)
        leaf.slots.append(slot)
        self._leaf_of[slot] = leaf

    def update(self, slot: int, tokens: list[str]) -> None:
        """The template in `slot` now reads `tokens` (some became wildcards)."""
        leaf = self._leaf_of[slot]
        leaf.rows[leaf.slots.index(slot)] = token_hashes(tokens)

    def leaf_of(self, slot: int) -> Leaf:
        return self._leaf_of[slot]

    def remove(self, slot: int) -> None:
        """Forget `slot`; a leaf left empty is pruned, and so are parents left empty."""
        leaf = self._leaf_of.pop(slot)
        i = leaf.slots.index(slot)
        n = len(leaf)
        leaf.rows[i : n - 1] = leaf.rows[i + 1 : n]
        del leaf.slots[i]
        if leaf.slots:
            return
        nodes: list[dict[object, object]] = []
        node: dict[object, object] = self._root  # type: ignore[assignment]
        for key in leaf.path:
            nodes.append(node)
            node = node[key]  # type: ignore[assignment]
        del node[""]
        self.leaves -= 1
        for parent, key in zip(reversed(nodes), reversed(leaf.path), strict=True):
            child = parent[key]
            if child:
                break
            del parent[key]

    def full(self, leaf: Leaf) -> bool:
        return len(leaf) >= self.max_leaf
