"""Pure domain logic: no I/O, imports nothing else from mailtrack."""
