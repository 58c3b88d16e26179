"""Diagrams of genomes and search results."""
