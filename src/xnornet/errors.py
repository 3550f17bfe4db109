"""One exception type for bad input, so stage entry points can print it as a single line."""


class XnornetError(Exception):
    """Bad input or a failed check: the message names the file or parameter and what was wrong."""
