"""Inbound SMTP for bounces, feedback-loop complaints and auto-replies, and applying them to recipients."""
