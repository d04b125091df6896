"""The one exception type that means "the user gave us something we cannot use".

The CLI turns it into one line on stderr and exit status 2; the Python API lets it propagate.
"""


class UserError(Exception):
    """Bad input: a missing file, an unknown model, an out-of-range value. The message is one line."""


def printable(text) -> str:
    """``text`` on one line: control characters (a newline in a file name, say) as escapes, the rest as is."""
    import unicodedata

    return "".join(ch.encode("unicode_escape").decode("ascii") if unicodedata.category(ch) == "Cc" else ch
                   for ch in str(text))
