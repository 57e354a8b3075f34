"""Flax modules, one family a file; no training code here."""
