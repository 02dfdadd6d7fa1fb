"""Parity of template.yaml and terraform/: the same functions (memory, timeout, ephemeral
storage, environment variable names and values, runtime, architecture, tracing, log format,
alias, deployment strategy, rollback alarms, reserved concurrency, database endpoint), queues
and their settings, the queues' resource policies, event source mappings and what they invoke,
schedules, the event bus and its rules (pattern, targets, dead-letter queues, retry policies),
alarms (with their evaluation, missing-data handling and actions), API routes, the roles' IAM
statements and the deploy role's trust conditions, log groups and their retention, the
dashboard's widgets, rotation schedules, the RDS Proxy and database settings, the NAT option,
the outputs (their names, and their values where both sources' values can be read), and the
parameters' constraints (template parameters against Terraform variables' validations)."""

from __future__ import annotations

from model_ops import OPAQUE

SECTIONS = (
    "functions",
    "env",
    "function_ops",
    "queues",
    "mappings",
    "invocations",
    "schedules",
    "alarms",
    "routes",
    "roles",
    "trust",
    "log_groups",
    "dashboard",
    "rotations",
    "proxy",
    "database",
    "network",
    "event_buses",
    "event_rules",
    "queue_policies",
)

# Terraform variables with no template parameter (the region is the stack's, the name is the stack
# name, the artifacts are what `sam build` makes), and template parameters with no variable (the
# bootstrap runs on every apply through timestamp()).
ONLY_TERRAFORM = {"region", "name", "artifacts_dir", "ca_layer_zip"}
ONLY_TEMPLATE = {"deploy_id"}


def _strip(value):
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if k != "where"}
    return value


def _diff(path: str, a, b, failures: list) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for field in sorted(set(a) | set(b), key=str):
            if field not in b:
                failures.append(("parity", f"{path} {field}: in template.yaml, missing in terraform/"))
            elif field not in a:
                failures.append(("parity", f"{path} {field}: in terraform/, missing in template.yaml"))
            else:
                _diff(f"{path} {field}", a[field], b[field], failures)
    elif isinstance(a, list) and isinstance(b, list) and a != b:
        only_sam = sorted((str(x) for x in a if x not in b))
        only_tf = sorted((str(x) for x in b if x not in a))
        failures.append(("parity", f"{path}: only in template.yaml {only_sam}, only in terraform/ {only_tf}" if only_sam or only_tf
                         else f"{path}: template.yaml {a!r} != terraform/ {b!r}"))
    elif a != b:
        failures.append(("parity", f"{path}: template.yaml {a!r} != terraform/ {b!r}"))


def _parameters(sam: dict, tf: dict, failures: list) -> None:
    for name in sorted(set(sam) | set(tf)):
        if name not in tf:
            if name not in ONLY_TEMPLATE:
                failures.append(("parity", f"parameters {name}: a template parameter without a Terraform variable"))
            continue
        if name not in sam:
            if name not in ONLY_TERRAFORM:
                failures.append(("parity", f"parameters {name}: a Terraform variable without a template parameter"))
            continue
        a, b = sam[name], tf[name]
        if b.get("type") == "bool":
            if a.get("allowed") not in (None, ["false", "true"]):
                failures.append(("parity", f"parameters {name}: a Terraform bool, but the template allows {a.get('allowed')}"))
            continue
        for constraint in ("allowed", "pattern", "min", "max"):
            if a.get(constraint) != b.get(constraint):
                failures.append(
                    ("parity", f"parameters {name} {constraint}: template.yaml {a.get(constraint)!r} != terraform/ validation {b.get(constraint)!r}")
                )


def _outputs(sam: dict, tf: dict, failures: list) -> None:
    for name in sorted(set(sam) | set(tf)):
        if name not in tf:
            failures.append(("parity", f"outputs {name}: a template output without a Terraform output"))
        elif name not in sam:
            failures.append(("parity", f"outputs {name}: a Terraform output without a template output"))
        elif OPAQUE not in str(sam[name]) and OPAQUE not in str(tf[name]) and sam[name] != tf[name]:
            failures.append(("parity", f"outputs {name}: template.yaml {sam[name]!r} != terraform/ {tf[name]!r}"))


def compare(sam: dict, tf: dict) -> list[tuple[str, str]]:
    failures: list[tuple[str, str]] = []
    for section in SECTIONS:
        left, right = sam[section], tf[section]
        for key in sorted(set(left) | set(right), key=str):
            if key not in right:
                failures.append(("parity", f"{section} {key}: in template.yaml, missing in terraform/"))
            elif key not in left:
                failures.append(("parity", f"{section} {key}: in terraform/, missing in template.yaml"))
            else:
                _diff(f"{section} {key}", _strip(left[key]), _strip(right[key]), failures)
    _parameters(sam["parameters"], tf["parameters"], failures)
    _outputs(sam["outputs"], tf["outputs"], failures)
    return failures
