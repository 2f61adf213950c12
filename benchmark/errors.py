"""The one exception type users see: a one-line message that names the problem and the fix."""


class UserError(Exception):
    """Bad input from the user (config, data, weights). The CLI prints it without a traceback."""


class DataError(UserError):
    """An audio file or JSONL row that cannot be used; names the file (and line) and what was done."""
