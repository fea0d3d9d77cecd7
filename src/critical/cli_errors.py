"""How the ``critical`` command reports a user's mistake: one or two lines on stderr, the
closest valid option, file or value, exit status 2 (``--debug`` shows the traceback instead).

:func:`usage_error_lines` formats a command-line parse error (an unknown option or config key, a
value of the wrong type, a missing config file); :func:`user_error_lines` formats a
``ValueError`` or missing file raised by a constructor or a set-up hook before training starts
(:func:`before_training` decides which errors count); :class:`ArgumentParser` does the same for
``critical sweep`` and ``critical report``.

Example:
    >>> closest("--cutof.policy", ["--cutoff.policy", "--cutoff.epoch"])
    '--cutoff.policy'
    >>> suggest_value("`policy` must be one of ['detector', 'fixed', 'never'], got 'detecter'")
    "; did you mean 'detector'?"
"""

from __future__ import annotations

import argparse
import ast
import difflib
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn


class ArgumentParser(argparse.ArgumentParser):
    """:class:`argparse.ArgumentParser` whose errors are two lines: the error, with the closest
    option for an unknown one, and where the help is; exit status 2 (``critical sweep`` and
    ``critical report`` use it)."""

    def error(self, message: str) -> NoReturn:
        unknown = re.search(r"unrecognized arguments: (.*)", message)
        if unknown:
            options = list(self._option_string_actions)
            tokens = unknown.group(1).split()
            parts = []
            for token in [t for t in tokens if t.startswith("-")] or tokens:
                opt = token.split("=", 1)[0]
                close = closest(opt, options) if opt.startswith("-") else None
                parts.append(
                    f"unknown {'option' if opt.startswith('-') else 'argument'} {opt}"
                    + (f"; did you mean {close}?" if close else "")
                )
            message = ", ".join(parts)
        self.exit(2, f"{self.prog}: error: {message}\n(`{self.prog} --help` lists the options)\n")


class UsageError(Exception):
    """A command-line parse error (unknown option, bad type, missing config file), raised
    instead of jsonargparse printing the whole usage; ``options`` are the valid option names."""

    def __init__(self, message: str, options: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.options = list(options)


#: exceptions that are the user's (a bad value, a missing file) when raised before training
USER_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    FileNotFoundError,
    FileExistsError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
)
#: Lightning hooks that run before the first training (or evaluation) batch: what they raise is
#: set-up, like the constructors (a missing dataset, an existing run directory, a metric typo)
_SETUP_HOOKS = ("prepare_data", "setup", "configure_model", "configure_optimizers", "on_fit_start")
#: the callback or class -> its key on the command line
_CLASS_KEYS = {
    "Trainer": "trainer",
    "ImageClassifier": "model",
    "ImageDataModule": "data",
    "TimeSeriesDataModule": "data",
    "GradientConfusion": "gradient_confusion",
    "GradientNorm": "gradient_norm",
    "GradientPredictability": "gradient_predictability",
    "LayerRotation": "layer_rotation",
    "AugmentationGap": "aug_gap",
    "CriticalPeriod": "critical_period",
    "AugmentationCutoff": "cutoff",
    "EnergyTracker": "energy",
    "RobustnessEvaluator": "robustness",
    "RunDirectory": "run",
}


def _frames(tb: TracebackType | None) -> Iterable[Any]:
    while tb is not None:
        yield tb.tb_frame
        tb = tb.tb_next


def before_training(err: BaseException) -> bool:
    """Whether ``err`` was raised while the classes were instantiated or in a set-up hook (data
    preparation, ``setup``, ``on_fit_start``, ...), before any training or evaluation step."""
    for frame in _frames(err.__traceback__):
        name = frame.f_code.co_name
        path = frame.f_code.co_filename.replace(os.sep, "/")
        if name == "instantiate_classes":
            return True
        if "lightning/pytorch" not in path:
            continue
        if name in ("_call_setup_hook", "_call_configure_model"):
            return True
        if name == "prepare_data" and path.endswith("data_connector.py"):
            return True
        if name.startswith("_call_") and frame.f_locals.get("hook_name") in _SETUP_HOOKS:
            return True
    return False


def _option_of(err: BaseException) -> str | None:
    """``--key.argument`` (or ``--key``) of the constructor that raised ``err``, if known."""
    key = None
    for frame in _frames(err.__traceback__):
        owner = frame.f_locals.get("self") if frame.f_code.co_name == "__init__" else None
        if owner is not None:
            key = next((k for c, k in _CLASS_KEYS.items() if type(owner).__name__ == c), key)
    if key is None:
        return None
    m = re.match(r"\s*`?([A-Za-z_][A-Za-z0-9_]*)`? (?:must|needs|is|only)", str(err))
    return f"--{key}.{m.group(1)}" if m else f"--{key}"


def closest(word: str, candidates: Iterable[str]) -> str | None:
    found = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return found[0] if found else None


def suggest_value(message: str) -> str:
    """``; did you mean 'x'?`` for a message ``... one of [...], got 'y'`` (else ``""``)."""
    m = re.search(r"one of (\[[^\]]*\]|\([^)]*\)|\{[^}]*\}),? got (.+?)\s*$", message)
    if not m:
        return ""
    try:
        valid = [str(v) for v in ast.literal_eval(m.group(1))]
        got = ast.literal_eval(m.group(2))
    except (ValueError, SyntaxError):
        return ""
    close = closest(str(got), valid) if isinstance(got, str) else None
    return f"; did you mean {close!r}?" if close else ""


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _config_suggestion(path: str) -> str:
    """``; did you mean X?`` for a missing config file, among the YAML files next to it (or in
    ``experiments/``)."""
    p = Path(path)
    folder = p.parent if p.parent.is_dir() else Path("experiments")
    if not folder.is_dir():
        return ""
    names = [f.name for f in folder.iterdir() if f.suffix in (".yaml", ".yml", ".json")]
    close = closest(p.name, names)
    return f"; did you mean {folder / close}?" if close else ""


def _type_name(text: str) -> str:
    m = re.match(r"<class '([\w.]+)'>", text.strip())
    name = m.group(1) if m else text.strip()
    return {"NoneType": "null", "str": "a string", "dict": "a mapping"}.get(name, name)


def usage_error_lines(cmd: str, err: UsageError) -> list[str]:
    """A parse error as one line, with the closest option or file, and a hint line."""
    raw = str(err.message)
    msg = _one_line(raw, 10_000)
    names = [o[2:] for o in err.options]
    unknown = re.search(r"unrecognized arguments: (.*)", msg)
    not_accepted = re.search(r"does not accept (?:option|nested key) '([^']+)'", msg)
    missing = re.search(r"File does not exist: '?([^' ]+)'?", msg)
    bad_value = re.match(r'Parser key "([^"]+)":', msg)
    if unknown:
        parts = []
        tokens = [t for t in unknown.group(1).split() if t.startswith("-")] or [unknown.group(1)]
        for token in tokens:
            opt = token.split("=", 1)[0]
            close = closest(opt, err.options)
            parts.append(f"unknown option {opt}" + (f"; did you mean {close}?" if close else ""))
        first = ", ".join(parts)
    elif not_accepted:
        key = not_accepted.group(1)
        close = closest(key, names)
        first = f"unknown option {key} (in --config or a flag)" + (
            f"; did you mean {close}?" if close else ""
        )
    elif missing:
        first = f"no such file: {missing.group(1)}{_config_suggestion(missing.group(1))}"
    elif bad_value:
        key = bad_value.group(1)
        # a --data.* value: jsonargparse nests the data module's error in a Union error
        nested = re.search(
            r'- Parser key "([^"]+)":\n(.*?)(?=\n\s*- |\n\s*Given value|\Z)', raw, re.S
        )
        if nested and "Union subtypes" in raw:
            key, raw = f"{key}.{nested.group(1)}", nested.group(2)
        given = re.search(r"(?:Given|Got) value: (.*)$", raw, re.MULTILINE)
        expected = re.findall(r"Expected an? (<class '[\w.]+'>|[\w.\[\], ]+?)[.\n]", raw + "\n")
        what = " or ".join(dict.fromkeys(_type_name(t) for t in expected))
        value = f" {given.group(1).strip()!r}" if given else ""
        literal = re.search(r"Literal\[([^\]]*)\]", raw)  # an option typed with fixed choices
        if literal:
            options = re.findall(r"'([^']*)'", literal.group(1))
            close = closest(given.group(1).strip(), options) if given else None
            what = "one of " + ", ".join(options) + (f"; did you mean {close!r}?" if close else "")
        first = f"--{key}: invalid value{value}" + (
            f" (expected {what})" if what else f": {_one_line(raw, 200)}"
        )
    else:
        first = _one_line(msg)
    return [
        f"critical {cmd}: error: {first}",
        f"(`critical {cmd} --help`: the main options and their values; `--help-all`: all)",
    ]


def _unwrap(err: BaseException) -> BaseException:
    """The constructor's own error inside jsonargparse's "Does not validate against any of the
    Union subtypes" (raised for ``--data``, a class path that may also be null)."""
    while str(err).startswith("Does not validate against any") and err.__cause__ is not None:
        err = err.__cause__
    return err


def user_error_lines(cmd: str, err: BaseException) -> list[str]:
    """A user error raised before training as one line (the option, the message, the closest
    valid value) and a hint line."""
    err = _unwrap(err)
    message = _one_line(str(err) or type(err).__name__)
    option = _option_of(err)
    where = f"{option}: " if option and option[2:] not in message else ""
    return [
        f"critical {cmd}: error: {where}{message}{suggest_value(message)}",
        f"(`critical {cmd} --help` lists the options and their values; --debug shows the "
        "traceback)",
    ]
