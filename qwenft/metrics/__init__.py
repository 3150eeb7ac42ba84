"""Metrics: new-word perplexity and bits per byte, clinical-answer metrics."""
