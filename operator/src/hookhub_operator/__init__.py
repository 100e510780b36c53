"""The operator service: the event log's read API and the console, behind Kong."""
