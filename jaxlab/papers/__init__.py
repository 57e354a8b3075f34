"""The reproduced papers, each a package of its own (its math, models, data generator, task and
plots). A paper reaches the framework exactly as a user's own code does: its experiment file in
``experiments/`` names its task, data loader and model by reference (`jaxlab.config.references`),
and its code uses only jaxlab's public pieces (`jaxlab.tasks.Task`, `jaxlab.data`, `jaxlab.models`,
`jaxlab.paths`, `jaxlab.errors`). The framework core never imports a paper."""
