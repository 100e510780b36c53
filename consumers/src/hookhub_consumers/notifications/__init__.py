"""The notifications consumer: delivers events to the team's endpoint (see `spec`)."""
