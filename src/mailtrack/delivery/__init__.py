"""Outbound delivery: claim due recipients, route, send over SMTP, record the outcome."""
