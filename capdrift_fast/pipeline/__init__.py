"""The stages of a run: preflight, plan, split, generate, parity, score (``runner.run`` calls them in order)."""
