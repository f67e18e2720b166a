"""Open and click tracking: HTML injection, signed-token endpoints, hit classification, group commit."""
