"""Bermeitinger et al., "Reducing the Transformer Architecture to a Minimum" (arXiv 2410.13732):
the attention variants, as a classifier for `jaxlab.tasks.classification`
(``config.model.constructor = "jaxlab.papers.transformer_minimization.model:classifier"``).
Experiment: ``experiments/minimal_transformer.py``; report: docs/transformer_minimization.md."""
