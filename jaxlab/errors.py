"""The one error type users see for bad input: the CLI turns it into exit status 2."""


class UserError(ValueError):
    """Bad input from the user (config, override, experiment name, data path).

    Raised before anything is written to a workdir; the message says what was wrong and what was
    expected.
    """
