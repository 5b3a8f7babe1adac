"""Turning new token ids into complete text, and finding stop strings in it.

Two things keep text from being given out the moment its token arrives. A byte-level BPE
token can end in the middle of a UTF-8 character (an emoji is often two or three tokens), and
decoding it alone gives a U+FFFD replacement character: such text waits for the token that
completes the character. And text that could be the start of a stop string waits until it
is clear whether the stop string follows: the output must end just before a stop string.
"""

from __future__ import annotations

INCOMPLETE = "\ufffd"  # what a decoder makes of a character whose bytes have not all arrived


class TextAssembler:
    """Turn one sequence's new token ids into text pieces, holding back partial characters and
    possible starts of stop strings; `stopped` once a stop string has appeared.

    The pieces (from `push`, then `finish`) add up to `tokenizer.decode(ids)`, cut just before
    the first stop string.
    """

    def __init__(self, tokenizer, stops: tuple[str, ...] = ()):
        self.tokenizer = tokenizer
        self.stops = tuple(stops)
        self.ids: list[int] = []
        self.stopped = False
        self.stop_token_count: int | None = None  # ids up to the one that completed a stop string
        self._settled = 0  # ids[:_settled] are turned into text, given out or held
        self._held = ""  # complete text kept back: it may be the start of a stop string

    def push(self, ids: list[int]) -> str:
        """Add token ids; return the text that is now certain (possibly "")."""
        pieces = []
        for token in ids:
            if self.stopped:
                break
            self.ids.append(token)
            text = self.tokenizer.decode(self.ids[self._settled :])
            if text.endswith(INCOMPLETE):
                continue  # a character split across tokens: wait for its last bytes
            self._settled = len(self.ids)
            pieces.append(self._release(self._held + text, final=False))
        return "".join(pieces)

    def finish(self) -> str:
        """No more tokens: return everything still held (a partial character decodes as U+FFFD)."""
        if self.stopped:
            return ""
        rest = (
            self.tokenizer.decode(self.ids[self._settled :])
            if self._settled < len(self.ids)
            else ""
        )
        self._settled = len(self.ids)
        return self._release(self._held + rest, final=True)

    def cut(self, ids: list[int]) -> list[int]:
        """`ids` up to and including the token that completes the first stop string."""
        self.push(ids)
        self.finish()  # a stop string may sit before a partial character at the very end
        return ids[: self.stop_token_count] if self.stopped else ids

    def _release(self, text: str, final: bool) -> str:
        found = [i for i in (text.find(stop) for stop in self.stops) if i >= 0]
        if found:
            self.stopped = True
            self.stop_token_count = len(self.ids)
            self._held = ""
            return text[: min(found)]
        hold = 0 if final else self._longest_stop_prefix_suffix(text)
        self._held = text[len(text) - hold :]
        return text[: len(text) - hold]

    def _longest_stop_prefix_suffix(self, text: str) -> int:
        """The length of the longest end of `text` that a stop string starts with."""
        longest = 0
        for stop in self.stops:
            for k in range(min(len(stop) - 1, len(text)), longest, -1):
                if text.endswith(stop[:k]):
                    longest = k
                    break
        return longest
