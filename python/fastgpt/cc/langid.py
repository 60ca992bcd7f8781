"""Offline language identification for `cc extract`: py3langid's model, scored faster.

py3langid walks an Aho-Corasick automaton over the UTF-8 bytes one byte at a time in
Python, which costs about 0.1 microseconds a byte and dominates extraction. The
automaton's patterns are at most `_WINDOW` bytes long, so its state after any byte is
the longest suffix of the last `_WINDOW` bytes that is a pattern prefix: a function of
that window alone. We look windows up in a direct-mapped cache with numpy and walk
the automaton only for windows not in it, which gives exactly py3langid's feature
counts, and so its scores, at a fraction of the cost.
"""

from __future__ import annotations

import math

import numpy as np

_IDENT = None
_WINDOW = 6  # bytes: py3langid 0.4's deepest automaton state (tests compare with py3langid)
_SLOTS_LOG2 = 21  # direct-mapped cache of 2M windows: 24 MB per process
_MULT = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing spreads window codes over the slots


class FastLangId:
    def __init__(self):
        from py3langid.langid import MODEL_FILE, LanguageIdentifier

        self.ident = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        self.nm = self.ident.tk_nextmove  # array.array: faster than numpy for scalar indexing
        self.rowbase = list(self.ident._rowbase)
        self.out = list(self.ident.tk_output)
        # float32 once here instead of casting the float16 rows on every document.
        self.ptc = np.asarray(self.ident.nb_ptc, dtype=np.float32)
        self.pc = np.asarray(self.ident.nb_pc, dtype=np.float32)
        # Slot keys are window code + 1 so that 0 means empty.
        self.keys = np.zeros(1 << _SLOTS_LOG2, dtype=np.uint64)
        self.vals = np.zeros(1 << _SLOTS_LOG2, dtype=np.int32)

    def _walk(self, window: bytes) -> int:
        state = 0
        nm, rowbase = self.nm, self.rowbase
        for b in window:
            state = nm[rowbase[state] + b]
        return self.out[state]

    def _features(self, data: bytes) -> np.ndarray:
        """Feature id (or -1) after each byte of `data`, as py3langid's walk yields them."""
        n = len(data)
        head = min(n, _WINDOW - 1)
        feats = np.empty(n, dtype=np.int32)
        state = 0
        nm, rowbase, out = self.nm, self.rowbase, self.out
        for i in range(head):  # windows that would reach before the text: walk exactly
            state = nm[rowbase[state] + data[i]]
            feats[i] = out[state]
        if n <= head:
            return feats
        # Code of the window ending at byte i (i >= 5): bytes i-5..i as a big-endian integer,
        # read as overlapping 8-byte words (two bytes of padding in front) and masked to 6 bytes.
        buf = b"\0\0" + data
        words = np.ndarray(shape=(n - head,), dtype=">u8", buffer=buf, strides=(1,))
        codes = (words & np.uint64((1 << (8 * _WINDOW)) - 1)) + np.uint64(1)
        with np.errstate(over="ignore"):
            slots = ((codes * _MULT) >> np.uint64(64 - _SLOTS_LOG2)).astype(np.intp)
        miss = self.keys[slots] != codes
        if miss.any():
            for slot, code in zip(slots[miss].tolist(), codes[miss].tolist()):
                self.keys[slot] = code
                self.vals[slot] = self._walk((code - 1).to_bytes(8, "big")[8 - _WINDOW :])
        feats[head:] = self.vals[slots]
        return feats

    def classify(self, text: str) -> tuple[str, float]:
        """(language, probability), equal to py3langid's `classify` with norm_probs=True."""
        ident = self.ident
        data = ident._encode(text)
        feats = self._features(data)
        feats = feats[feats >= 0]
        if len(feats):
            ids, counts = np.unique(feats, return_counts=True)
            scores = np.log1p(counts.astype(np.float32)) @ self.ptc[ids] + self.pc
        else:
            scores = np.zeros(len(ident.nb_classes), dtype=np.float32)
        # The rest mirrors py3langid's _decide and classify for norm_probs=True.
        scores *= 1.0 / math.sqrt(len(data) or 1)
        np.exp(scores - scores.max(), out=scores)
        scores /= scores.sum()
        for i, j in ident._alias_pairs:
            scores[i] += scores[j]
            scores[j] = 0.0
        best = int(scores.argmax())
        return ident.nb_classes[best], float(scores[best])


def classify(text: str) -> tuple[str, float]:
    """Language of `text` and its probability; loads the model on first use in each process."""
    global _IDENT
    if _IDENT is None:
        try:
            _IDENT = FastLangId()
        except AttributeError:  # a py3langid whose internals moved: use its own (slower) scorer
            from py3langid.langid import MODEL_FILE, LanguageIdentifier

            _IDENT = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    return _IDENT.classify(text)
