"""Evaluation: codec quality (metrics.py), control adherence, Fréchet distance and diversity, perplexity,
speed, and the static HTML report (`musiclm eval report`)."""
