"""Metrics registered by name: exact match, numeric match, classification, ROUGE-L, IFEval; no benchmark knowledge."""
