"""Metrics computed from predictions, and the plots that show them."""
