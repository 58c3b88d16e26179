"""Proxy tasks that score a decoded genome (detection is the one shipped)."""
