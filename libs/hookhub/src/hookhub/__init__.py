"""Hookhub's shared library: the event contract, the providers, the broker topology and settings."""
