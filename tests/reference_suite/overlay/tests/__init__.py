"""The reference's test package (its helpers are ours)."""
