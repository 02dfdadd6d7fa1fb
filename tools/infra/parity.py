"""Parity of template.yaml and terraform/: the same functions (memory, timeout, ephemeral
storage, environment variable names, runtime, architecture, tracing, log format), queues and
their settings, event source mappings, schedules, alarms and API routes."""

from __future__ import annotations

SECTIONS = ("functions", "queues", "mappings", "schedules", "alarms", "routes")


def _strip(value):
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if k != "where"}
    return value


def compare(sam: dict, tf: dict) -> list[tuple[str, str]]:
    failures = []
    for section in SECTIONS:
        left, right = sam[section], tf[section]
        for key in sorted(set(left) | set(right), key=str):
            if key not in right:
                failures.append(("parity", f"{section} {key}: in template.yaml, missing in terraform/"))
            elif key not in left:
                failures.append(("parity", f"{section} {key}: in terraform/, missing in template.yaml"))
            else:
                a, b = _strip(left[key]), _strip(right[key])
                if isinstance(a, dict) and isinstance(b, dict):
                    for field in sorted(set(a) | set(b)):
                        if isinstance(a.get(field), list) and isinstance(b.get(field), list) and a.get(field) != b.get(field):
                            only_sam = sorted(set(a[field]) - set(b[field]))
                            only_tf = sorted(set(b[field]) - set(a[field]))
                            failures.append(
                                ("parity", f"{section} {key} {field}: only in template.yaml {only_sam}, only in terraform/ {only_tf}")
                            )
                        elif a.get(field) != b.get(field):
                            failures.append(
                                ("parity", f"{section} {key} {field}: template.yaml {a.get(field)!r} != terraform/ {b.get(field)!r}")
                            )
                elif a != b:
                    failures.append(("parity", f"{section} {key}: template.yaml {a!r} != terraform/ {b!r}"))
    return failures
