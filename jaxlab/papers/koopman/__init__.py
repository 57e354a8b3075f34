"""Cheng et al., "Information Shapes Koopman Representation" (arXiv 2510.13025): Koopman
autoencoders with InfoNCE and von Neumann entropy terms (`information`), the models (`model`), the
simulated dynamical systems (`dynamics`) and the task (`task`). Experiment:
``experiments/koopman.py``; report: docs/koopman.md."""
