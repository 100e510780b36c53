"""Hookhub consumers: payments, production and notifications on one runtime."""
