"""Every ```python block of README.md and docs/*.md, run as a reader pastes it."""
