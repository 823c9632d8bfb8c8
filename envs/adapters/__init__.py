"""Adapters that expose third-party environment suites (rlve-gym, reasoning-gym) through the `Env` API."""
