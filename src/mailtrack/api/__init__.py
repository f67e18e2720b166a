"""HTTP API (FastAPI): JSON under /api/v1, errors turned into responses in one place."""
