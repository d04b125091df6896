"""The one exception type that means "the user gave us something we cannot use".

The CLI turns it into one line on stderr and exit status 2; the Python API lets it propagate.
"""


class UserError(Exception):
    """Bad input: a missing file, an unknown model, an out-of-range value. The message is one line."""
