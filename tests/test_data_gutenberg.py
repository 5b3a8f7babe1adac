"""Stripping Project Gutenberg's header and footer, on small texts and on the `poetry` files."""

from __future__ import annotations

import pytest
from conftest import shared_file

from gptlab.data.gutenberg import strip_gutenberg

SMALL_PRINT_ETEXT = """\
*****The Project Gutenberg Etext of Poems of William Blake*****
Please take a look at the important information in this header.
***START**THE SMALL PRINT!**FOR PUBLIC DOMAIN ETEXTS**START***
You may distribute this etext.
*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*



 Piping down the valleys wild,
 Piping songs of pleasant glee,


End of The Project Gutenberg Etext of Poems of William Blake
\x1a"""

EBOOK = """\
\ufeffThe Project Gutenberg eBook of Leaves of Grass\r
\r
*** START OF THE PROJECT GUTENBERG EBOOK LEAVES OF GRASS ***\r
\r
Come, said my soul,\r
Such verses for my Body let us write,\r
\r
*** END OF THE PROJECT GUTENBERG EBOOK LEAVES OF GRASS ***\r
Section 1. General Terms of Use\r
"""


def test_the_small_print_header_and_the_end_line_are_removed():
    assert strip_gutenberg(SMALL_PRINT_ETEXT) == (
        " Piping down the valleys wild,\n Piping songs of pleasant glee,\n"
    )


def test_start_and_end_of_the_project_gutenberg_ebook_lines_are_removed_with_the_licence():
    assert (
        strip_gutenberg(EBOOK) == "Come, said my soul,\r\nSuch verses for my Body let us write,\n"
    )


def test_the_footer_is_looked_for_only_after_the_header():
    text = (
        "*** START OF THIS PROJECT GUTENBERG EBOOK X ***\nbody\n*** END OF THIS PROJECT GUTENBERG"
    )
    assert strip_gutenberg("End of Project Gutenberg's X\n" + text) == "body\n"


def test_a_header_without_a_footer_keeps_the_text_to_its_end():
    assert strip_gutenberg("licence\n*END*THE SMALL PRINT!*END*\nOf Man's first\n") == (
        "Of Man's first\n"
    )


@pytest.mark.parametrize(
    "text",
    [
        "[Paradise Lost by John Milton 1667] \n \n \nBook I \n \n \nOf Man's first disobedience",
        'Answered:  "I know thee, stranger, who thou art--  *** \nOf God, as with a mantle\n',
        "",
    ],
)
def test_a_text_without_the_markers_is_returned_unchanged(text):
    assert strip_gutenberg(text) == text


@pytest.mark.parametrize(
    "filename, first_line, last_line",
    [
        (
            "milton-paradise.txt",
            "This is the February 1992 Project Gutenberg release of: ",
            "[The End]",
        ),
        ("whitman-leaves.txt", "This Etext created by G. Fuhrman", "Good-bye--and hail! my Fancy."),
        (
            "blake-poems.txt",
            "William Blake",
            "Fled back unhinderd till she came into the vales of Har",
        ),
    ],
)
def test_the_poetry_files_keep_their_text_from_after_the_small_print_to_before_the_end_line(
    filename, first_line, last_line
):
    text = shared_file("poetry", filename).read_text(encoding="utf-8")
    stripped = strip_gutenberg(text)
    lines = stripped.splitlines()
    assert (lines[0], lines[-1]) == (first_line, last_line)
    assert stripped in text.replace("\x1a", "")
    assert "SMALL PRINT" not in stripped and "End of The Project Gutenberg" not in stripped
