"""The transformer's answers kept for questions asked before: a symbol's hour, or a window of
candles, with the model version that answered (a new version asks afresh)."""

from __future__ import annotations

from collections import OrderedDict

#: Answers kept by default.
CACHE_SIZE = 4096


class AnswerCache:
    """Probabilities by key, the oldest dropped first once `size` are kept (0: none kept)."""

    def __init__(self, size: int = CACHE_SIZE):
        self.size = size
        self._answers: OrderedDict[tuple, float] = OrderedDict()

    def get(self, key: tuple) -> float | None:
        return self._answers.get(key)

    def keep(self, key: tuple, prob: float) -> None:
        if self.size:
            self._answers[key] = prob
            while len(self._answers) > self.size:
                self._answers.popitem(last=False)

    def clear(self) -> None:
        self._answers.clear()
