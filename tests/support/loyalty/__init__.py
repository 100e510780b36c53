"""The loyalty consumer: points for every paid order. A toy, and the worked example of
docs/consumers.md ("Adding a consumer"): a stateful consumer built exactly the documented way,
which tests run through the real runtime and store."""
