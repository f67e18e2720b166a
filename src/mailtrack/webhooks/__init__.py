"""Webhooks: signed POSTs of every event in the outbox, at least once (see dispatcher.py)."""
