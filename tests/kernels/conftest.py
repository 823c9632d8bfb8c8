"""Kernel tests run in Triton's CPU interpreter: tests/conftest.py sets TRITON_INTERPRET=1 for the session,
before anything imports triton (which reads it at import)."""
