"""Load and latency benchmarks: chatkit-asgi beside openai-chatkit and a bare-Starlette floor."""
