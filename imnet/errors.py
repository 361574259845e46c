"""The one exception type for user errors (bad input, missing files, wrong formats).

The CLI prints such an error as one clear line and exits non-zero; any other exception is a bug and
shows its traceback. The message must name the file and say what is wrong.
"""


class ImnetError(Exception):
    """A user error: bad input, missing or corrupt file, wrong format. Message names the file."""
