"""Infrastructure errors the `killreport` commands report as one line and an exit code (light to
import: `killreport --help` must not load the database stack)."""


class DatabaseError(RuntimeError):
    """The application database cannot be reached or prepared; the message says which and how to fix."""
