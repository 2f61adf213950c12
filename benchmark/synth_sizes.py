"""Names of the synthetic suite's sizes, importable without loading the generator."""

SIZES = ("tiny", "quick", "large")
