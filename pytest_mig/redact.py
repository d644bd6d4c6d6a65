"""Secrets never reach a report: values of secret-looking options are masked as `***`.

Rules: an argument `--NAME=VALUE` or `NAME=VALUE` whose NAME looks secret (token, secret,
password, passwd, pwd, api key, access key, credential; as words, so `--tokenizer` is not)
shows `--NAME=***`; a secret-looking `--NAME` hides the argument after it; `user:pass@`
in a URL shows `user:***@`. Applied to command lines and harness options in results.json,
run.json, the run header, the HTML page and Allure. Workloads still get the real values.
"""
from __future__ import annotations

import re
import shlex
from typing import Iterable, Mapping

MASK = "***"
SECRET = re.compile(r"(?<![a-z])(token|secret|password|passwd|pwd|api[_-]?key|access[_-]?key|"
                    r"credentials?)s?(?![a-z])", re.IGNORECASE)
_ASSIGN = re.compile(r"^(-{0,2}[A-Za-z0-9_.-]+)([=:])(.*)$", re.DOTALL)
_URL_CRED = re.compile(r"(://[^/:@\s]+:)[^@/\s]+@")


def secret_name(name: str) -> bool:
    return bool(SECRET.search(name))


def mask_argv(argv: Iterable[str]) -> list[str]:
    out: list[str] = []
    hide_next = False
    for arg in argv:
        arg = str(arg)
        if hide_next:
            out.append(MASK)
            hide_next = False
            continue
        m = _ASSIGN.match(arg)
        if m and secret_name(m.group(1)):
            out.append(f"{m.group(1)}{m.group(2)}{MASK}")
            continue
        if arg.startswith("-") and secret_name(arg):
            hide_next = True
        out.append(_URL_CRED.sub(rf"\g<1>{MASK}@", arg))
    return out


def mask_command(text: str) -> str:
    """A command-line string with secret values masked (unsplittable text: all masked)."""
    try:
        return shlex.join(mask_argv(shlex.split(text)))
    except ValueError:
        return MASK


def mask_options(options: Mapping[str, str]) -> dict[str, str]:
    """Harness options as reported: secret-looking keys masked, command templates masked."""
    out = {}
    for key, value in options.items():
        if secret_name(key):
            out[key] = MASK
        elif key in ("command", "extra_run_args", "main_prefix"):
            out[key] = mask_command(str(value))
        else:
            out[key] = value
    return out


def mask_commands(commands: Mapping[str, list[str]]) -> dict[str, list[str]]:
    return {name: mask_argv(argv) for name, argv in commands.items()}
