"""`hookhub dev`: the whole hub in one process, for one machine."""
