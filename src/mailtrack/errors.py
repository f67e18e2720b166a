"""mailtrack's exceptions. Raised anywhere, turned into responses / messages in one place.

    MailtrackError
    ├── ConfigError            a setting is missing or invalid (shown at start, no traceback)
    ├── InputError             bad input from a caller → HTTP 422 (``field`` names what is wrong)
    ├── AuthError              missing or unknown API key / session → HTTP 401
    ├── NotFound               no such object *for this account* → HTTP 404
    └── Conflict               the request clashes with stored state → HTTP 409
"""

from __future__ import annotations


class MailtrackError(Exception):
    status_code = 500

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class ConfigError(MailtrackError):
    pass


class InputError(MailtrackError):
    status_code = 422


class AuthError(MailtrackError):
    status_code = 401


class NotFound(MailtrackError):
    status_code = 404


class Conflict(MailtrackError):
    status_code = 409
