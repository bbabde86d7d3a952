"""openai-chatkit 1.6.5's own test suite, run against chatkit-asgi with import changes only."""
