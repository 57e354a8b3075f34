"""The built-in experiments, one file each; installed as the package ``jaxlab.experiments``."""
