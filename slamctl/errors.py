"""The one error type of slamctl.

Raised where user input enters (a path, a CSV field, a checkpoint) with a message that
names the offending file or field and what was expected. The CLI turns it into a single
line on stderr and exit status 1; it is never shown as a traceback.
"""


class SlamError(Exception):
    """A user-facing error: the message is one line naming the file or field at fault."""
