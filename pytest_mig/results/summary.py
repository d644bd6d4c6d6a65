"""Parse LoadGen's `mlperf_log_summary.txt` of every generation (MLPerf v0.5 to v5.x) into a `Summary`.

The file is a fixed sequence of sections; we read it line by line and fail loudly,
naming the file and the missing part, when a required part is absent. Rules, as the
published results show them:
- Every numeric line of the summary block is kept in `metrics`; the headline is the
  token rate when there is one (LLM runs: `Tokens per second`, `Completed tokens per
  second`, `... (inferred)`: the scored metric), else the first metric line. LoadGen 4.0 LLM
  Server runs print `Completed tokens per second` only under Additional Stats: it is the
  headline there too (never the samples/s line above it).
- Sub-blocks of Additional Stats are never merged: LoadGen 1.0 MultiStream writes an
  `Intervals between each IssueQuery` block, a per-query and a per-sample latency block
  with the same labels (`latencies_ns` holds per-query, `sample_latencies_ns` per-sample);
  LLM runs add first-token (`ttft_ns`) and time-per-output-token (`tpot_ns`) blocks.
- `TTFT`/`TPOT Early Stopping Result:` bullets go to `token_early_stopping`.
- NUL bytes (`SUT\x00`) are dropped; `Single Stream`/`Multi Stream` (v0.5-v1.0) are
  read as `SingleStream`/`MultiStream`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from pytest_mig.errors import ResultParseError
from pytest_mig.io import UnsafeFile, read_text

HEADER = "MLPerf Results Summary"
RULE = re.compile(r"^=+$")
# "name : value" with any spacing around the colon ("Samples per second: 318100").
KEY_VALUE = re.compile(r"^\s*(?P<key>[^:]+?)\s*:\s*(?P<value>.*?)\s*$")
BULLET = re.compile(r"^\s*\*\s?(?P<text>.*?)\s*$")
COUNT_LINE = re.compile(r"^(?P<count>No|\d+)\s+(?P<kind>warning|error)s?\s+encountered", re.IGNORECASE)
ESTIMATE = re.compile(r"^Early stopping (?P<pct>\S+ percentile) estimate:\s*(?P<value>\S+)$")
LATENCY = re.compile(r"^(?:(?P<word>Min|Max|Mean)|(?P<pct>[\d.]+) percentile) latency \(ns\)$")
# Token-latency lines of LLM runs: 'Min First Token latency (ns)', '99.00 percentile time to output token (ns)'.
TOKEN_LATENCY = re.compile(r"^(?:(?P<word>Min|Max|Mean)|(?P<pct>[\d.]+) percentile) "
                           r"(?P<what>first token latency|time to output token) \(ns\)$", re.IGNORECASE)
INTERVAL = re.compile(r"^(?P<pct>[\d.]+) percentile$")
# Additional Stats sub-headings, with optional '"name" : number' parameters after the colon.
BLOCK = re.compile(r"^(?P<label>Per-query latency|Per-sample latency|Intervals between each IssueQuery)"
                   r"\s*:\s*(?P<params>.*)$")
PARAM = re.compile(r'"(?P<key>[^"]+)"\s*:\s*(?P<value>[-+]?[\d.]+(?:[eE][-+]?\d+)?)')
TOKEN_SECTION = re.compile(r"^(?P<kind>TTFT|TPOT) Early Stopping Result:$")
RESULT_LINE = re.compile(r"^\s*Result is\s*:")
SATISFIED_SUFFIX = " satisfied"


@dataclass
class Summary:
    """Everything `mlperf_log_summary.txt` says about one LoadGen run."""

    source: str
    sut_name: str
    scenario: str
    mode: str
    result: str  # "VALID" | "INVALID"
    headline_name: str
    headline_value: float
    constraints: dict[str, bool] = field(default_factory=dict)
    invalid_reasons: list[str] = field(default_factory=list)
    recommendations: list[str] = field(default_factory=list)
    early_stopping: list[str] = field(default_factory=list)
    early_stopping_estimates: dict[str, float] = field(default_factory=dict)
    additional: dict[str, float] = field(default_factory=dict)
    latencies_ns: dict[str, float] = field(default_factory=dict)  # per-query when blocks are labelled
    # Every numeric line of the summary block, in file order (the headline is one of them).
    metrics: dict[str, float] = field(default_factory=dict)
    sample_latencies_ns: dict[str, float] = field(default_factory=dict)  # LoadGen 1.0 MultiStream
    issue_intervals: dict[str, float] = field(default_factory=dict)  # LoadGen 1.0 MultiStream
    ttft_ns: dict[str, float] = field(default_factory=dict)  # LLM: first-token latency
    tpot_ns: dict[str, float] = field(default_factory=dict)  # LLM: time per output token
    token_early_stopping: dict[str, list[str]] = field(default_factory=dict)  # "TTFT"/"TPOT" -> bullets
    parameter_warnings: list[str] = field(default_factory=list)  # LoadGen 5.x notes in Test Parameters
    # Lines of the summary block after the first, e.g. {"Tokens per second": 1963.67} (kept for callers).
    result_lines: dict[str, float] = field(default_factory=dict)
    test_parameters: dict[str, str] = field(default_factory=dict)
    warnings: int = 0
    errors: int = 0

    @property
    def valid(self) -> bool:
        return self.result == "VALID"


def headline(summary: Summary) -> tuple[str, float]:
    """The scenario's headline metric as LoadGen names it, e.g. ("Samples per second", 133.743)."""
    return summary.headline_name, summary.headline_value


def token_throughput(summary: Summary) -> tuple[str, float] | None:
    """An LLM run's scored metric, e.g. ("Tokens per second", 1963.67); None for other runs."""
    for name, value in (*summary.metrics.items(), *summary.additional.items()):
        if "tokens per second" in name.lower():
            return name, value
    return None


def load_text(source: str | Path) -> tuple[str, str]:
    """(text, name) of a source: a Path or a path string is read; a str holding a newline is the text."""
    if isinstance(source, str) and "\n" in source:
        return source, "<text>"
    path = Path(source)
    try:
        # Regular files only, size-capped, never blocking: a FIFO or /dev/zero is refused.
        return read_text(path), str(path)
    except UnsafeFile as exc:
        raise ResultParseError(str(exc)) from None
    except FileNotFoundError:
        raise ResultParseError(f"{path}: file not found (did the run write its logs there?)") from None
    except IsADirectoryError:
        raise ResultParseError(f"{path}: is a directory; pass the file inside it") from None
    except OSError as exc:
        raise ResultParseError(f"{path}: cannot be read: {exc.strerror or exc}") from None


def parse_summary(source: str | Path) -> Summary:
    """Parse a summary file (path) or its text (a str with newlines); ResultParseError if unusable."""
    text, name = load_text(source)
    return _Parser(text.splitlines(), name).parse()


def latency_key(label: str) -> str | None:
    """'Min latency (ns)' -> 'min', '99.90 percentile latency (ns)' -> 'p99.9'; None if not a latency."""
    match = LATENCY.match(label)
    if not match:
        return None
    return _short(match.group("word"), match.group("pct"))


def _short(word: str | None, pct: str | None) -> str:
    return word.lower() if word else "p" + format(float(pct or "nan"), "g")


class _Parser:
    """One pass over the lines; each `_section` method consumes its part of the file."""

    def __init__(self, lines: list[str], name: str) -> None:
        self.lines = [line.rstrip("\r").replace("\x00", "") for line in lines]
        self.name = name
        self.pos = 0

    def fail(self, what: str) -> ResultParseError:
        return ResultParseError(
            f"{self.name}: not a LoadGen mlperf_log_summary.txt: {what}. "
            "Point the harness at the run's own summary file, or rerun the benchmark if it is truncated.")

    def parse(self) -> Summary:
        if not any(line.strip() for line in self.lines):
            raise self.fail("the file is empty")
        if not any(line.strip() == HEADER for line in self.lines):
            if any(COUNT_LINE.match(line.strip()) for line in self.lines):
                raise self.fail(f"no '{HEADER}' block: an AccuracyOnly run writes no performance "
                                "result; read its accuracy.txt instead")
            raise self.fail(f"no '{HEADER}' header line")
        if not any(RESULT_LINE.match(line) for line in self.lines):
            raise self.fail("no 'Result is' line (file truncated?)")
        self.pos = next(i for i, line in enumerate(self.lines) if line.strip() == HEADER) + 1
        head = self._header()
        summary = Summary(source=self.name, **head)
        self._verdict(summary)
        self._additional(summary)
        self._test_parameters(summary)
        self._counts(summary)
        summary.invalid_reasons = _reasons(summary)
        if not any("tokens per second" in key.lower() for key in summary.metrics):
            # LoadGen 4.0 LLM Server runs print the token rate only under Additional Stats.
            tokens = next((k for k in summary.additional if "tokens per second" in k.lower()), None)
            if tokens is not None:
                summary.headline_name, summary.headline_value = tokens, summary.additional[tokens]
        summary.result_lines = dict(list(summary.metrics.items())[1:])
        for prefix, block in (("ttft", summary.ttft_ns), ("tpot", summary.tpot_ns)):
            summary.latencies_ns.update({f"{prefix}_{k}": v for k, v in block.items()})
        return summary

    # -- sections -------------------------------------------------------------
    def _header(self) -> dict:
        fields: dict[str, str] = {}
        metrics: dict[str, float] = {}
        while self.pos < len(self.lines):
            line = self.lines[self.pos].strip()
            self.pos += 1
            if not line or RULE.match(line):
                continue
            match = KEY_VALUE.match(line)
            if not match:
                raise self.fail(f"line {self.pos}: expected 'name : value', got {line!r}")
            key, value = match.group("key"), match.group("value")
            if key == "Result is":
                fields["result"] = value
                break
            if key in ("SUT name", "Scenario", "Mode"):
                fields[key] = value
            else:
                metrics[key] = self._number(value, key)
        for key in ("SUT name", "Scenario", "Mode"):
            if key not in fields:
                raise self.fail(f"no '{key} :' line in the summary block")
        if "result" not in fields:
            raise self.fail("no 'Result is' line (file truncated?)")
        if fields["result"] not in ("VALID", "INVALID"):
            raise self.fail(f"'Result is : {fields['result']}' is neither VALID nor INVALID")
        if not metrics:
            raise self.fail("no headline metric line (e.g. 'Samples per second: ...') before 'Result is'")
        tokens = [key for key in metrics if "tokens per second" in key.lower()]
        name = tokens[0] if tokens else next(iter(metrics))
        return {
            "sut_name": fields["SUT name"].strip(), "scenario": fields["Scenario"].replace(" ", ""),
            "mode": fields["Mode"], "result": fields["result"], "headline_name": name,
            "headline_value": metrics[name], "metrics": metrics,
        }

    def _verdict(self, summary: Summary) -> None:
        """Constraint lines, then optional 'Recommendations:' and 'Early Stopping Result:' bullets."""
        bucket: list[str] | None = None
        while self.pos < len(self.lines):
            raw = self.lines[self.pos]
            line = raw.strip()
            if not line and self._next_text().endswith("Early Stopping Result:"):
                self.pos += 1  # an empty TTFT block is followed by a blank line, then TPOT's
                continue
            if not line or RULE.match(line):
                return
            self.pos += 1
            if line == "Recommendations:":
                bucket = summary.recommendations
                continue
            if line == "Early Stopping Result:":
                bucket = summary.early_stopping
                continue
            token = TOKEN_SECTION.match(line)
            if token:
                bucket = summary.token_early_stopping.setdefault(token.group("kind"), [])
                continue
            bullet = BULLET.match(raw)
            if bucket is not None and bullet:
                bucket.append(bullet.group("text"))
                if bucket is not summary.recommendations:
                    kind = next((k for k, v in summary.token_early_stopping.items() if v is bucket), "")
                    self._estimate(summary, bullet.group("text"), kind)
            elif bucket is not None and bucket:
                # LoadGen wraps long early-stopping bullets onto indented lines without a '*'.
                bucket[-1] = f"{bucket[-1]} {line}"
            else:
                match = KEY_VALUE.match(line)
                if not match or match.group("value") not in ("Yes", "NO", "No"):
                    raise self.fail(f"line {self.pos}: expected a constraint like "
                                    f"'Min duration satisfied : Yes', got {line!r}")
                summary.constraints[match.group("key")] = match.group("value") == "Yes"

    def _next_text(self) -> str:
        """The next non-blank line after the current one, stripped ('' at the end)."""
        return next((line.strip() for line in self.lines[self.pos + 1:] if line.strip()), "")

    def _estimate(self, summary: Summary, text: str, kind: str) -> None:
        """'Early stopping 90.0th percentile estimate: 5541' -> estimates['90.0th percentile'] (or 'TTFT ...')."""
        match = ESTIMATE.match(text)
        if match:
            key = f"{kind} {match.group('pct')}" if kind else match.group("pct")
            summary.early_stopping_estimates[key] = self._number(match.group("value"), text)

    def _additional(self, summary: Summary) -> None:
        block = ""
        for line in self._section("Additional Stats"):
            heading = BLOCK.match(line)
            if heading:
                block = heading.group("label").split()[0].lower()  # per-query | per-sample | intervals
                for param in PARAM.finditer(heading.group("params")):
                    target = summary.issue_intervals if block == "intervals" else summary.additional
                    name = param.group("key") if block == "intervals" else f"{block} {param.group('key')}"
                    target[name] = self._number(param.group("value"), line)
                continue
            match = KEY_VALUE.match(line)
            if not match or not match.group("value"):
                continue
            key, value = match.group("key"), self._number(match.group("value"), match.group("key"))
            self._stat(summary, block, key, value)

    def _stat(self, summary: Summary, block: str, key: str, value: float) -> None:
        """File one Additional Stats line into the dict of its block; a repeated label is an error."""
        short = latency_key(key)
        token = TOKEN_LATENCY.match(key)
        interval = INTERVAL.match(key)
        if short is not None:
            target = summary.sample_latencies_ns if block == "per-sample" else summary.latencies_ns
        elif token:
            short = _short(token.group("word"), token.group("pct"))
            target = summary.ttft_ns if token.group("what").lower().startswith("first") else summary.tpot_ns
        elif interval and block == "intervals":
            short, target = _short(None, interval.group("pct")), summary.issue_intervals
        else:
            short, target = key, summary.additional
        if short in target:
            raise self.fail(f"'{key}' appears twice in one Additional Stats block")
        target[short] = value

    def _test_parameters(self, summary: Summary) -> None:
        for line in self._section("Test Parameters Used"):
            if line.startswith("WARNING:"):
                # LoadGen 5.x: 'WARNING: sample_concatenate_permutation was set to true.' and its wrapped text.
                summary.parameter_warnings.append(line.removeprefix("WARNING:").strip())
                continue
            match = KEY_VALUE.match(line)
            if not match and summary.parameter_warnings:
                summary.parameter_warnings[-1] += " " + line
                continue
            if not match:
                raise self.fail(f"line {self.pos}: expected 'parameter : value' in Test Parameters Used, "
                                f"got {line!r}")
            summary.test_parameters[match.group("key")] = match.group("value")

    def _counts(self, summary: Summary) -> None:
        seen: dict[str, int] = {}
        for line in self.lines[self.pos:]:
            match = COUNT_LINE.match(line.strip())
            if match:
                count = match.group("count")
                seen[match.group("kind").lower()] = 0 if count.lower() == "no" else int(count)
        for kind in ("warning", "error"):
            if kind not in seen:
                raise self.fail(f"no '... {kind}s encountered' line at the end (file truncated?)")
        summary.warnings, summary.errors = seen["warning"], seen["error"]

    # -- helpers --------------------------------------------------------------
    def _section(self, title: str) -> list[str]:
        """Lines of a '====\\n<title>\\n====' section, up to the next rule or blank-then-rule."""
        for i in range(self.pos, len(self.lines)):
            if self.lines[i].strip() == title:
                start = i + 1
                break
        else:
            raise self.fail(f"no '{title}' section (file truncated?)")
        if start < len(self.lines) and RULE.match(self.lines[start].strip()):
            start += 1
        out: list[str] = []
        end = start
        while end < len(self.lines):
            line = self.lines[end].strip()
            if RULE.match(line) or COUNT_LINE.match(line):
                break
            if line:
                out.append(line)
            end += 1
        self.pos = end
        return out

    def _number(self, text: str, what: str) -> float:
        try:
            return float(text)
        except ValueError:
            raise self.fail(f"'{what}' has value {text!r}, which is not a number") from None


def _reasons(summary: Summary) -> list[str]:
    """Human text for an INVALID run: each unmet constraint, then LoadGen's recommendations."""
    if summary.valid:
        return []
    reasons = []
    for name, met in summary.constraints.items():
        if met:
            continue
        text = (name[: -len(SATISFIED_SUFFIX)] + " not satisfied") if name.endswith(SATISFIED_SUFFIX) \
            else f"{name}: NO"
        if name.startswith("Early stopping"):
            parts = [" ".join(summary.early_stopping)] if summary.early_stopping else []
            parts += [f"{kind}: {' '.join(bullets)}" for kind, bullets in summary.token_early_stopping.items()
                      if bullets and bullets != ["Run successful."]]  # an empty block says nothing
            if parts:
                text += " (" + "; ".join(parts) + ")"
        reasons.append(text)
    reasons.extend(summary.recommendations)
    if not reasons:
        reasons.append("LoadGen reported INVALID without naming a reason; see mlperf_log_detail.txt")
    return reasons
