"""Resolution of the tracking setting: site → client → email, the most specific wins."""

from __future__ import annotations


def resolve_tracking(site: bool, client: bool | None, email: bool | None) -> bool:
    """``None`` means 'inherit' at the client and email levels."""
    if email is not None:
        return email
    if client is not None:
        return client
    return site
