"""The production consumer: a ticket per paid order (see `spec` for what it reads and emits)."""
