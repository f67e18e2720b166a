"""mailtrack: self-hosted email delivery and tracking for business applications."""

__version__ = "0.1.0"
