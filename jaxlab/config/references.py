"""References from a config to code: jaxlab's one extension mechanism.

A config names its task, data loader and model constructor as ``MODULE:ATTRIBUTE`` strings;
`resolve` and `call` import what they name, `absolute_file_references` makes file paths absolute.
"""

import importlib
import inspect
import pathlib
import re
import sys
import traceback
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from jaxlab.errors import UserError, one_line

_REFERENCE = re.compile(r"^(?P<module>[^:]+):(?P<attribute>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)$")


def _split(reference: Any, where: str) -> tuple[str, str]:
    match = _REFERENCE.match(reference) if isinstance(reference, str) else None
    if match is None:
        raise UserError(
            f"{where}={reference!r} is not a reference to code; expected "
            f"'package.module:name' or 'path/to/file.py:name'"
        )
    return match["module"], match["attribute"]


def is_file_reference(value: Any) -> bool:
    """Whether ``value`` is a string of the form ``path/to/file.py:name``."""
    match = _REFERENCE.match(value) if isinstance(value, str) else None
    return match is not None and match["module"].endswith(".py")


def absolute_file_references(tree: Mapping[str, Any], base: pathlib.Path) -> dict[str, Any]:
    """A copy of the nested dict ``tree`` in which every relative file reference is made absolute
    against the directory ``base``."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            value = absolute_file_references(value, base)
        elif is_file_reference(value):
            value = absolute_file_reference(value, base)
        out[key] = value
    return out


def absolute_file_reference(reference: str, base: pathlib.Path) -> str:
    """The file reference ``reference`` with its path made absolute against ``base``."""
    module, attribute = reference.rsplit(":", 1)
    path = pathlib.Path(module).expanduser()
    return f"{(base / path).resolve() if not path.is_absolute() else path}:{attribute}"


def resolve(reference: str, where: str) -> Any:
    """The object that ``reference`` names; ``where`` (e.g. ``"config.task"``) prefixes errors.

    Raises `UserError` naming the file and the cause when the module does not exist, fails to
    import, or lacks the attribute.
    """
    module_name, attribute = _split(reference, where)
    if module_name.endswith(".py"):
        module = _import_file(pathlib.Path(module_name), reference, where)
    else:
        module = _import_module(module_name, reference, where)
    value = module
    for part in attribute.split("."):
        if not hasattr(value, part):
            raise UserError(f"{where}={reference!r}: {_origin(module)} defines no {attribute!r}")
        value = getattr(value, part)
    return value


def call(section: Mapping[str, Any], key: str, where: str, **fixed: Any) -> Any:
    """Calls what ``section[key]`` references with the section's other keys as keyword arguments,
    plus ``fixed`` (arguments the caller supplies, e.g. a model's ``num_classes``).

    An argument the callable does not take is a `UserError` listing the ones it does; an error
    the call raises (a data file that does not exist, a bad value) is a `UserError` naming the
    config key, the reference and where in the code it was raised.
    """
    function = resolve(section[key], f"{where}.{key}")
    kwargs = {k: v for k, v in section.items() if k != key}
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):  # no signature to check (a builtin): let the call decide
        parameters = None
    if parameters is not None and not any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
    ):
        unknown = sorted(set(kwargs) - set(parameters))
        if unknown:
            taken = ", ".join(p for p in parameters if p not in fixed) or "-"
            raise UserError(
                f"{section[key]} does not take {where}."
                f"{f', {where}.'.join(unknown)}; it takes: {taken}"
            )
    try:
        return function(**kwargs, **fixed)
    except UserError:
        raise
    except Exception as error:  # noqa: BLE001 - the user's code: reported as one line
        raise UserError(f"{where}.{key}={section[key]!r} failed: {describe_error(error)}") from None


def _import_module(name: str, reference: str, where: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except (Exception, SystemExit) as error:  # noqa: BLE001 - any failure of the user's module
        missing = error.name if isinstance(error, ModuleNotFoundError) else None
        if missing and f"{name}.".startswith(f"{missing}.") and missing not in sys.modules:
            raise UserError(
                f"{where}={reference!r}: no module named {missing!r} (is it "
                f"installed or on PYTHONPATH? a file is written path/to/file.py:name)"
            ) from None
        raise UserError(
            f"{where}={reference!r}: importing module {name} failed: {describe_error(error)}"
        ) from None


def _import_file(path: pathlib.Path, reference: str, where: str) -> ModuleType:
    path = path.expanduser().resolve()
    if not path.is_file():
        raise UserError(f"{where}={reference!r}: the file {path} does not exist")
    root, parts = path.parent, [path.stem]
    while (root / "__init__.py").is_file():
        root, parts = root.parent, [root.name, *parts]
    name = ".".join(parts)
    existing = sys.modules.get(name)
    if existing is not None and _file_of(existing) != path:
        raise UserError(
            f"{where}={reference!r}: {path} would be imported as module {name!r}, a "
            f"name already taken by {_origin(existing)}; rename one of them"
        )
    if str(root) not in sys.path:
        sys.path.append(str(root))
    try:
        module = importlib.import_module(name)
    except (Exception, SystemExit) as error:  # noqa: BLE001 - any failure of the user's file
        raise UserError(
            f"{where}={reference!r}: importing {path} failed: {describe_error(error)}"
        ) from None
    if _file_of(module) != path:
        raise UserError(
            f"{where}={reference!r}: {path} would be imported as module {name!r}, a "
            f"name already taken by {_origin(module)}; rename one of them"
        )
    return module


def _file_of(module: ModuleType) -> pathlib.Path | None:
    file = getattr(module, "__file__", None)
    return pathlib.Path(file).resolve() if file else None


def _origin(module: ModuleType) -> str:
    file = _file_of(module)
    return f"{module.__name__} ({file})" if file else module.__name__


def describe_error(error: BaseException) -> str:
    """``ExceptionType: message (file, line N)``: one line on an error raised in a user's file,
    naming the innermost frame outside Python's import machinery."""
    where = ""
    if isinstance(error, SyntaxError) and error.filename:
        where = f" ({error.filename}, line {error.lineno})"
    else:
        frames = traceback.extract_tb(error.__traceback__)
        user = [f for f in frames if "importlib" not in f.filename]
        if user:
            where = f" ({user[-1].filename}, line {user[-1].lineno})"
    return f"{one_line(error)}{where}"
