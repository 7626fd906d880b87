"""The text front end of spoken-digit synthesis: a digit string ("4 1 7", "417", "four one seven", "4, one-7") into
its words and each word's phonemes (ARPAbet without stress marks, the ten FSDD words only).

Phonemes rather than characters: the ten words share sounds (the N of one/seven/nine, the F of four/five, the S of
six/seven), so a phoneme token is trained by several words, and a letter that is not pronounced (the e of five, the
gh of eight) never needs a frame. Anything else in the text is a one-line :class:`~deepkit.errors.DataError` naming
what was received and what is accepted.
"""

from __future__ import annotations

from deepkit.errors import DataError

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
PHONEMES_OF = {
    "zero": ("Z", "IH", "R", "OW"),
    "one": ("W", "AH", "N"),
    "two": ("T", "UW"),
    "three": ("TH", "R", "IY"),
    "four": ("F", "AO", "R"),
    "five": ("F", "AY", "V"),
    "six": ("S", "IH", "K", "S"),
    "seven": ("S", "EH", "V", "AH", "N"),
    "eight": ("EY", "T"),
    "nine": ("N", "AY", "N"),
}
# index 0 is padding; the rest in order of first appearance over the ten words
PHONEMES = ("<pad>", *dict.fromkeys(p for w in WORDS for p in PHONEMES_OF[w]))
PHONEME_ID = {p: i for i, p in enumerate(PHONEMES)}
SEPARATORS = " \t,-"
ACCEPTED = "digits 0-9, the words zero..nine (any case), spaces, commas and hyphens"


def parse_digits(text: str) -> list[int]:
    """The digits a text names, in order: ``"4 1 7"``, ``"417"``, ``"four one seven"``, ``"Four-1, seven"`` ->
    ``[4, 1, 7]``. An empty text, an unknown character or an unknown word is a one-line error."""
    out: list[int] = []
    i, low = 0, text.lower()
    while i < len(low):
        ch = low[i]
        if ch.isascii() and ch.isdigit():
            out.append(int(ch))
            i += 1
        elif ch in SEPARATORS:
            i += 1
        elif ch.isascii() and ch.isalpha():
            j = i
            while j < len(low) and low[j].isascii() and low[j].isalpha():
                j += 1
            word = low[i:j]
            if word not in WORDS:
                raise DataError(f"unknown word '{text[i:j]}' in {text!r}; accepted: {ACCEPTED}")
            out.append(WORDS.index(word))
            i = j
        else:
            raise DataError(f"unknown character {ch!r} at position {i} of {text!r}; accepted: {ACCEPTED}")
    if not out:
        raise DataError(f"no digits in {text!r}; accepted: {ACCEPTED}")
    return out


def phoneme_ids(digit: int) -> list[int]:
    """The phoneme ids of one digit's word (no padding)."""
    return [PHONEME_ID[p] for p in PHONEMES_OF[WORDS[digit]]]
