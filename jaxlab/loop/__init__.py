"""The training loop: `train` (one run, or several stacked as one program) and what it runs on
the device: the program (`program`), the steps (`step`), the state (`state`), the optimizer
(`optim`) and what feeds the steps (`feed`)."""
