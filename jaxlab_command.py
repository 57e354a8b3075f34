"""The ``jaxlab`` command's entry point (`jaxlab.cli`), kept outside the package so that it runs
before anything is imported: SIGTERM and SIGINT are held pending from the first instant (importing
jaxlab and JAX takes about 2 s), and the command takes them once it can act on them, so that a
signal during start-up is never lost or turned into a traceback (`jaxlab.rundir.preemption`)."""

import signal


def console() -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, (signal.SIGTERM, signal.SIGINT))
    from jaxlab.cli import console as run_command  # after the signals are held

    run_command()
