"""Hookhub's fault suite (`make chaos`): see chaos/README.md."""
