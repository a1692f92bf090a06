"""The one exception type for mistakes a user, a file or the network can make.

Library code raises `KitError` with a message that says what went wrong, where, and
what to do; the CLI turns it into `Error: <message>` and exit status 1, never a
traceback. Our own invariants use `assert` instead.
"""


class KitError(Exception):
    """A user-facing error: the message is shown as is."""
