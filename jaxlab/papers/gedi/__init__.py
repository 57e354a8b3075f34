"""Sansone & Manhaeve, GEDI (arXiv 2401.00873): self-supervised clustering trained as an
energy-based model: SGLD sampling (`ebm`), the network (`model`), clustering scores
(`clustering`) and the task (`task`). Experiment: ``experiments/gedi.py``; report: docs/gedi.md."""
