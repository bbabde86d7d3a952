"""The servers under test, one ASGI app per module (run each under its own uvicorn)."""
