"""Log template mining in the manner of Drain (He et al., ICWS 2017), with a bounded template set.

Messages are masked (UUIDs, IPs, hex IDs, numbers), split into tokens and routed through a fixed-depth
prefix tree to a few candidate templates; the most similar one absorbs the message (differing
tokens become `<*>`), or a new template starts. Masking runs in polars over all of a batch's
uncached messages at once (Rust regexes, about 1 µs a message here against 4 µs for Python's `re`),
and only the batch's distinct masked texts reach the tree, through a cache of masked text ->
template. Where messages repeat, an exact cache (message -> template) skips the masks too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from detector.config import TemplatesConfig
from detector.templates.tree import WILDCARD, TemplateTree

_CACHE_CHARS = 64 << 20  # characters held by each cache at most


@dataclass(slots=True)
class Template:
    id: int
    tokens: list[str]
    first_seen: float

    @property
    def text(self) -> str:
        return " ".join(self.tokens)


@dataclass(slots=True)
class MinedBatch:
    template_id: npt.NDArray[np.int64]
    is_new: npt.NDArray[np.bool_]  # template first seen in this event's window
    is_rare: npt.NDArray[np.bool_]  # template seen fewer than rare_count times before this batch


class TemplateMiner:
    """Maps messages to stable template ids; at most `max_templates` are kept (LRU eviction).

    >>> from detector.config import TemplatesConfig
    >>> m = TemplateMiner(TemplatesConfig())
    >>> a = m.template_of("user 42 logged in from 10.0.0.1")
    >>> b = m.template_of("user 7 logged in from 10.0.0.9")
    >>> a == b, m.text(a)
    (True, 'user <NUM> logged in from <IP>')
    """

    def __init__(self, cfg: TemplatesConfig) -> None:
        self.cfg = cfg
        expr = pl.col("m")
        for rx, tok in _merge_masks(cfg.masks):
            expr = expr.str.replace_all(rx, tok)
        self._mask_expr = expr
        cap = cfg.max_templates
        self._slot_tid = np.full(cap, -1, dtype=np.int64)  # slot -> public template id
        self._count = np.zeros(cap, dtype=np.int64)
        self._first_seen = np.zeros(cap, dtype=np.float64)
        self._last_used = np.zeros(cap, dtype=np.int64)
        self._templates: dict[int, Template] = {}  # slot -> template
        self._slot_of: dict[int, int] = {}  # public id -> slot
        self._tree = TemplateTree(cfg.depth, cfg.max_children, cfg.max_leaf_templates)
        self._masked = _Cache(cfg.cache_size)  # masked text -> slot
        self._exact = _Cache(cfg.cache_size)  # message -> slot, for streams whose messages repeat
        self._free: list[int] = []  # slots given up by evicted templates
        self._next_id = 0
        self._tick = 0
        self.evictions = 0

    # ---- public -------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._templates)

    def text(self, template_id: int) -> str:
        slot = self._slot_of.get(template_id)
        return "<evicted>" if slot is None else self._templates[slot].text

    def template_of(self, message: str, ts: float = 0.0) -> int:
        """The template id of one message (notebook convenience; pipelines use `mine`)."""
        one = pl.Series([message], dtype=pl.String)
        return int(self.mine(one, np.array([ts]), 1.0).template_id[0])

    def mine(
        self, messages: pl.Series, ts: npt.NDArray[np.float64], window: float
    ) -> MinedBatch:
        """Template ids of a batch, with per-event new / rare flags, and update the counts.

        When messages repeat (a quarter as many distinct as there are events, or fewer), each
        distinct message is looked up in the exact cache and only the unseen ones are masked.
        Otherwise the masks run as one polars expression over the whole batch, and only the
        distinct masked texts are looked up (or clustered, when unseen).
        """
        self._tick += 1
        n = len(messages)
        if n == 0:
            empty = np.zeros(0, dtype=np.int64)
            return MinedBatch(empty, empty.astype(bool), empty.astype(bool))
        distinct = messages.unique()
        if 4 * len(distinct) <= n:
            slots, tids = self._slots_exact(messages, distinct.to_list(), ts)
        else:
            masked = pl.DataFrame({"m": messages}).select(self._mask_expr).to_series()
            slots, tids = self._slots_of(masked, ts)
        # A batch with more distinct templates than max_templates evicts some of its own: their
        # events keep the id they were given; they are new and rare, and count for nobody.
        gone = self._slot_tid[slots] != tids
        rare = (self._count[slots] < self.cfg.rare_count) | gone
        born = self._first_seen[slots]
        is_new = (np.floor(born / window) == np.floor(ts / window)) | gone
        live = slots[~gone] if gone.any() else slots
        self._count += np.bincount(live, minlength=len(self._count))
        self._last_used[live] = self._tick
        return MinedBatch(template_id=tids, is_new=is_new, is_rare=rare)

    def templates(self) -> list[tuple[int, str, int]]:
        """(id, text, count) of every live template, most frequent first."""
        out = [(t.id, t.text, int(self._count[s])) for s, t in self._templates.items()]
        return sorted(out, key=lambda x: -x[2])

    def table(self) -> list[tuple[int, str, int, float]]:
        """(id, text, count, first seen) of every live template, most frequent first."""
        out = [(t.id, t.text, int(self._count[s]), t.first_seen) for s, t in self._templates.items()]
        return sorted(out, key=lambda x: -x[2])

    def state_dict(self) -> dict[str, Any]:
        """Templates (id, tokens, first seen, count) in id order, for a checkpoint (plain data)."""
        rows = sorted(((t.id, t.tokens, t.first_seen, int(self._count[s]))
                       for s, t in self._templates.items()), key=lambda r: r[0])
        return {"templates": [list(r) for r in rows], "next_id": self._next_id}

    def load_state(self, state: dict[str, Any]) -> None:
        """Rebuild the templates of `state_dict` into this (empty) miner, ids kept, so templates
        known before a restart are neither new nor rare after it."""
        if self._templates:
            raise ValueError("load_state needs an empty miner")
        for tid, tokens, first_seen, count in state["templates"]:
            tokens = [str(tok) for tok in tokens]
            slot = self._free_slot()
            leaf = self._tree.route(tokens)
            if self._tree.full(leaf):
                continue  # more than a leaf holds (another configuration): the rest relearn
            t = Template(id=int(tid), tokens=tokens, first_seen=float(first_seen))
            self._templates[slot] = t
            self._slot_of[t.id] = slot
            self._slot_tid[slot] = t.id
            self._count[slot] = int(count)
            self._first_seen[slot] = t.first_seen
            self._tree.add(leaf, slot, tokens)
            self._masked.put(" ".join(t.tokens), slot)
        self._next_id = max(int(state.get("next_id", 0)), self._next_id)

    # ---- mining -------------------------------------------------------------------------
    def _slots_exact(
        self, messages: pl.Series, distinct: list[str], ts: npt.NDArray[np.float64]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """(slot, template id) of each message through the exact cache; only uncached messages
        are masked."""
        found = {m: self._exact.get(m, -1) for m in distinct}
        tid = {m: int(self._slot_tid[s]) for m, s in found.items() if s >= 0}
        unseen = [m for m, slot in found.items() if slot < 0]
        if unseen:
            masked = pl.DataFrame({"m": unseen}).select(self._mask_expr).to_series().to_list()
            born_at = _first_times(messages, ts)
            self._last_used[[s for s in found.values() if s >= 0]] = self._tick
            for raw, text in zip(unseen, masked, strict=True):
                slot = self._masked.get(text)
                if slot is None:
                    slot = self._cluster(text.split(), born_at[raw])
                    self._masked.put(text, slot)
                self._last_used[slot] = self._tick  # not to be evicted by this batch's others
                found[raw], tid[raw] = slot, int(self._slot_tid[slot])
                self._exact.put(raw, slot)
        keys = list(found)
        return self._per_event(messages, keys, list(found.values()), [tid[m] for m in keys])

    def _slots_of(self, texts: pl.Series, ts: npt.NDArray[np.float64]
                  ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """(slot, template id) of each masked text: distinct texts via the cache, or the tree
        when unseen."""
        first = texts.arg_unique()  # where each distinct text first occurs, in one pass
        distinct = texts.gather(first).to_list()
        born_at = ts[first.to_numpy()]
        found, tids = [], []
        for text, born in zip(distinct, born_at.tolist(), strict=True):
            slot = self._masked.get(text)
            if slot is None:
                slot = self._cluster(text.split(), born)
                self._masked.put(text, slot)
            self._last_used[slot] = self._tick  # not to be evicted by this batch's others
            found.append(slot)
            tids.append(int(self._slot_tid[slot]))
        return self._per_event(texts, distinct, found, tids)

    @staticmethod
    def _per_event(texts: pl.Series, distinct: list[str], slots: list[int], tids: list[int]
                   ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Per event, the slot of its text and the template id that slot held when the text
        was assigned (a later eviction in the same batch may have given the slot away)."""
        idx = texts.replace_strict(distinct, list(range(len(distinct))),
                                   return_dtype=pl.Int64).to_numpy()
        return (np.asarray(slots, dtype=np.int64)[idx], np.asarray(tids, dtype=np.int64)[idx])

    def _cluster(self, tokens: list[str], ts: float) -> int:
        tree = self._tree
        leaf = tree.route(tokens)
        best, best_sim = tree.closest(leaf, tokens)
        if best >= 0 and best_sim >= self.cfg.similarity:
            tpl = self._templates[best].tokens
            merged = [a if a == b else WILDCARD for a, b in zip(tpl, tokens, strict=True)]
            if merged != tpl:
                self._templates[best].tokens = merged
                tree.update(best, merged)
            return best
        if tree.full(leaf):  # a leaf of many distinct texts: its least recently used goes
            self._evict(min(leaf.slots, key=lambda s: int(self._last_used[s])))
        slot = self._free_slot()
        leaf = tree.route(tokens)  # freeing a slot may have pruned the leaf
        t = Template(id=self._next_id, tokens=tokens, first_seen=ts)
        self._next_id += 1
        self._templates[slot] = t
        self._slot_of[t.id] = slot
        self._slot_tid[slot] = t.id
        self._count[slot] = 0
        self._first_seen[slot] = ts
        self._last_used[slot] = self._tick
        tree.add(leaf, slot, tokens)
        return slot

    def _free_slot(self) -> int:
        if self._free:
            return self._free.pop()
        n = len(self._templates)
        if n < self.cfg.max_templates:
            return n
        slot = int(np.argmin(self._last_used))
        self._evict(slot)
        return self._free.pop()

    def _evict(self, slot: int) -> None:
        old = self._templates.pop(slot)
        self._slot_of.pop(old.id, None)
        self._tree.remove(slot)
        self._last_used[slot] = np.iinfo(np.int64).max  # free: not a candidate for eviction
        self._free.append(slot)
        # Cached messages may point at the evicted slot; drop the caches rather than scan them.
        self._masked.clear()
        self._exact.clear()
        self.evictions += 1


class _Cache(dict[str, int]):
    """text -> slot, bounded in entries and in characters (messages may be long): when full it
    is cleared, cheaper than LRU bookkeeping on every hit; the next batch refills what is used."""

    def __init__(self, max_entries: int, max_chars: int = _CACHE_CHARS) -> None:
        super().__init__()
        self.max_entries, self.max_chars, self.chars = max_entries, max_chars, 0

    def put(self, key: str, slot: int) -> None:
        if len(self) >= self.max_entries or self.chars + len(key) > self.max_chars:
            self.clear()
        self.chars += len(key)
        self[key] = slot

    def clear(self) -> None:
        super().clear()
        self.chars = 0


def _first_times(messages: pl.Series, ts: npt.NDArray[np.float64]) -> dict[str, float]:
    """Time of the first occurrence of each distinct message of a batch (one pass).

    >>> _first_times(pl.Series(["a", "b", "a"]), np.array([1.0, 2.0, 3.0]))
    {'a': 1.0, 'b': 2.0}
    """
    first = messages.arg_unique()
    return dict(zip(messages.gather(first).to_list(), ts[first.to_numpy()].tolist(), strict=True))


def _merge_masks(masks: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Adjacent masks with the same token become one alternation: one regex pass fewer each.

    >>> _merge_masks([("a+", "<A>"), ("b+", "<A>"), ("c", "<C>")])
    [('(?:a+)|(?:b+)', '<A>'), ('c', '<C>')]
    """
    groups: list[tuple[list[str], str]] = []
    for rx, tok in masks:
        if groups and groups[-1][1] == tok:
            groups[-1][0].append(rx)
        else:
            groups.append(([rx], tok))
    return [
        ("|".join(f"(?:{rx})" for rx in rxs) if len(rxs) > 1 else rxs[0], tok)
        for rxs, tok in groups
    ]
