"""Project Gutenberg's boilerplate: the licence header and the footer around an etext's own text.

Two generations of the header are in use, and both end on one line that can be searched for:

- etexts of the 1990s, like the `poetry` files (NLTK's copies of 1992-1993 releases), open with
  notes on Project Gutenberg and its "small print" licence, which ends on
  `*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*`, and close on
  `End of The Project Gutenberg Etext of Poems of William Blake`;
- later etexts open with `*** START OF THE PROJECT GUTENBERG EBOOK <TITLE> ***` (or `THIS`) and
  close on `*** END OF THE PROJECT GUTENBERG EBOOK <TITLE> ***`, often after a line `End of the
  Project Gutenberg EBook of <title>`, with the licence after it.

The markers are those of c-w/gutenberg's `strip_headers` (`_domain_model/text.py`) that frame the
whole text; its further markers ("Produced by", "This etext was prepared by", ...) cut inside
it, at producers' credits, and are left out here: a credit line or a transcriber's note after the
header stays. A text without these markers, such as NLTK's later copies, whose only header is a
title line like `[Paradise Lost by John Milton 1667]`, is returned unchanged: it has no licence
text to remove, and its title line is the book's own.
"""

from __future__ import annotations

import re
import string

# Matched at the start of a line, after any spaces and asterisks, in any case.
_HEADER_LAST_LINE = re.compile(
    r"^[ \t*]*(?:START OF (?:THE|THIS) PROJECT GUTENBERG|END\*? ?THE SMALL PRINT).*$",
    re.IGNORECASE | re.MULTILINE,
)
_FOOTER_FIRST_LINE = re.compile(
    r"^[ \t*]*END OF (?:THE |THIS )?PROJECT GUTENBERG", re.IGNORECASE | re.MULTILINE
)
_LEADING_BLANK_LINES = re.compile(r"\A(?:[ \t\r]*\n)+")
# Trailing whitespace, and the DOS end-of-file mark (Ctrl-Z) that some 1990s etexts end with.
_TRAILING_SPACE = string.whitespace + "\x1a"


def strip_gutenberg(text: str) -> str:
    """The text of a Project Gutenberg etext without its header and footer; other text unchanged.

    The header runs to its first closing line, the footer from the first closing line after that;
    the blank lines around what is left go too, and it ends with one newline.
    """
    header = _HEADER_LAST_LINE.search(text)
    start = header.end() if header else 0
    footer = _FOOTER_FIRST_LINE.search(text, start)
    if header is None and footer is None:
        return text
    body = text[start : footer.start() if footer else len(text)]
    return _LEADING_BLANK_LINES.sub("", body).rstrip(_TRAILING_SPACE) + "\n"
