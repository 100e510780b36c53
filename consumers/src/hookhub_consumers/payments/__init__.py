"""The payments consumer: each order's payment state (see `spec` for what it reads and emits)."""
