"""Allure labels and attachments for one case, only when `--alluredir` is given."""
from __future__ import annotations

from pathlib import Path

TAIL_BYTES = 64 * 1024


def enabled(config) -> bool:
    return bool(getattr(config.option, "allure_report_dir", None))


def describe(config, out, session) -> None:
    """epic = suite, feature = benchmark, story = scenario; summary and logs attached."""
    if not enabled(config):
        return
    import allure

    case = out.case
    allure.dynamic.epic(case.suite)
    allure.dynamic.feature(case.benchmark)
    allure.dynamic.story(case.scenario)
    allure.dynamic.tag(case.mode)
    for key, value in (("MIG profile", case.profile), ("test mode", case.mode),
                       ("GPU model", case.gpu_model), ("harness", session.settings.harness),
                       ("run profile", case.run_profile.name),
                       ("GPU backend", session.topology().backend)):
        allure.dynamic.parameter(key, value)
    r = out.result
    if r is not None:
        for name in ("summary", "accuracy"):
            path = r.files.get(name)
            if path and Path(path).exists():
                allure.attach.file(str(path), name=Path(path).name,
                                   attachment_type=allure.attachment_type.TEXT)
    if out.main is not None:
        _attach_tail(allure, out.main.log_path, "main.log")
    for bg in out.backgrounds:
        _attach_tail(allure, bg.log_path, f"{bg.name}.log")


def _attach_tail(allure, path: Path, name: str) -> None:
    if not Path(path).exists():
        return
    with open(path, "rb") as fh:
        fh.seek(0, 2)
        size = fh.tell()
        fh.seek(max(0, size - TAIL_BYTES))
        data = fh.read().decode("utf-8", "replace")
    allure.attach(data, name=name, attachment_type=allure.attachment_type.TEXT)
