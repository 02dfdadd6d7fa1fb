"""Loads template.yaml (SAM) and terraform/ (HCL) into one normalised model.

The model is a plain dict, the same shape for both sources, so that the property checks
(checks.py) run unchanged on either and the parity check (parity.py) compares two of them:

    functions: {key: {memory, timeout, ephemeral_storage, env: sorted names, runtime,
                      architectures, tracing, log_format, application_log_level,
                      system_log_level}}
    queues:    {key: {visibility, retention, sse, dlq: key | None, max_receive: int | None}}
    mappings:  {(function, queue): {batch_size, window, max_concurrency, response_types}}
    schedules: {job: {expression, input}}
    routes:    {route key: behind the optional authorizer (bool)}
    policies:  [{where, effect, actions: [...], resources: [...]}]  (every IAM statement)
    buckets:   {key: [bucket policy statements, each {effect, principal_any, actions, covers,
                                                      secure_transport_false}]}
    problems:  [(property, message)] found while loading (e.g. a policy that cannot be read)

and the operational sections of model_ops.py (environment values, deployments, alarms with their
actions, roles' statements, log groups, the dashboard, rotation, the proxy, the database, the
parameters' constraints, Terraform's provider versions).

Keys: functions api, worker, importer, scheduler, bootstrap; queues work, work_dlq, high_work,
high_work_dlq, import, import_dlq, events_dlq (SAM logical ids WorkQueue, WorkDeadLetterQueue,
HighWorkQueue, ... are mapped onto them).
"""

from __future__ import annotations

import glob
import json
import os
import re

import yaml

import model_ops

# --------------------------------------------------------------------------------------------
# CloudFormation / SAM
# --------------------------------------------------------------------------------------------


class _CfnLoader(yaml.SafeLoader):
    """YAML loader accepting CloudFormation's short-form tags (!Ref, !GetAtt, !Sub, ...)."""


def _cfn_tag(loader, tag_suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "Condition":
        return {"Condition": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        resource, _, attribute = value.partition(".")
        value = [resource, attribute]
    return {"Fn::" + tag_suffix: value}


_CfnLoader.add_multi_constructor("!", _cfn_tag)


def load_cfn(path: str) -> dict:
    with open(path, encoding="utf-8") as fh:
        return yaml.load(fh, Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass


def _sam_key(logical_id: str) -> str:
    """ApiFunction -> api, WorkDeadLetterQueue -> work_dlq, ImportQueue -> import."""
    for suffix, replacement in (("DeadLetterQueue", "_dlq"), ("Queue", ""), ("Function", "")):
        if logical_id.endswith(suffix) and logical_id != suffix:
            return re.sub(r"(?<!^)(?=[A-Z])", "_", logical_id[: -len(suffix)]).lower() + replacement
    return logical_id


def _referenced(value) -> str | None:
    """The logical id a !Ref / !GetAtt points at."""
    if isinstance(value, dict):
        if "Ref" in value:
            return value["Ref"]
        if "Fn::GetAtt" in value:
            return value["Fn::GetAtt"][0]
    return None


def _as_list(value) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _merge_globals(globals_: dict, props: dict) -> dict:
    """SAM's Globals rules: maps merge, lists concatenate, scalars are overridden."""
    merged = dict(globals_)
    for key, value in props.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        elif isinstance(value, list) and isinstance(merged.get(key), list):
            merged[key] = merged[key] + value
        else:
            merged[key] = value
    return merged


def _cfn_statements(document, where: str) -> list[dict]:
    out = []
    for statement, _ in model_ops.cfn_statement_entries((document or {}).get("Statement")):
        out.append(
            {
                "where": where,
                "effect": statement.get("Effect", "Allow"),
                "actions": [a for a in _as_list(statement.get("Action")) if isinstance(a, str)],
                "resources": _as_list(statement.get("Resource")),
                "raw": statement,
            }
        )
    return out


def _bucket_statement(statement: dict, bucket_id: str) -> dict:
    principal = statement.get("Principal")
    principal_any = principal == "*" or (isinstance(principal, dict) and _as_list(principal.get("AWS")) == ["*"])
    bool_condition = (statement.get("Condition") or {}).get("Bool") or {}
    secure = bool_condition.get("aws:SecureTransport")
    covers = set()
    for resource in _as_list(statement.get("Resource")):
        if _referenced(resource) == bucket_id:
            covers.add("bucket")
        elif isinstance(resource, dict) and "Fn::Sub" in resource:
            text = resource["Fn::Sub"] if isinstance(resource["Fn::Sub"], str) else resource["Fn::Sub"][0]
            if text == "${%s.Arn}/*" % bucket_id:
                covers.add("objects")
    return {
        "effect": statement.get("Effect"),
        "principal_any": principal_any,
        "actions": _as_list(statement.get("Action")),
        "covers": covers,
        "secure_transport_false": str(secure).lower() == "false",
    }


def sam_model(path: str) -> dict:
    template = load_cfn(path)
    resources = template.get("Resources", {})
    function_globals = (template.get("Globals") or {}).get("Function", {})
    model = {
        "functions": {},
        "queues": {},
        "mappings": {},
        "schedules": {},
        "alarms": {},
        "routes": {},
        "policies": [],
        "buckets": {},
        "problems": [],
    }

    for logical_id, resource in resources.items():
        kind = resource.get("Type")
        props = resource.get("Properties") or {}

        if kind == "AWS::Serverless::Function":
            props = _merge_globals(function_globals, props)
            key = _sam_key(logical_id)
            logging = props.get("LoggingConfig") or {}
            model["functions"][key] = {
                "memory": props.get("MemorySize", 128),
                "timeout": props.get("Timeout", 3),
                "ephemeral_storage": (props.get("EphemeralStorage") or {}).get("Size", 512),
                "env": sorted(((props.get("Environment") or {}).get("Variables") or {}).keys()),
                "runtime": props.get("Runtime"),
                "architectures": _as_list(props.get("Architectures")),
                "tracing": props.get("Tracing"),
                "log_format": logging.get("LogFormat"),
                "application_log_level": logging.get("ApplicationLogLevel"),
                "system_log_level": logging.get("SystemLogLevel"),
            }
            if "Role" not in props:
                model["problems"].append(
                    ("no-star-resource", f"{logical_id} has no Role: SAM would attach AWS managed policies with '*' resources")
                )
            for policy in _as_list(props.get("Policies")):
                if isinstance(policy, dict) and "Statement" in policy:
                    model["policies"] += _cfn_statements(policy, f"{logical_id}.Policies")
            for event_id, event in (props.get("Events") or {}).items():
                event_props = event.get("Properties") or {}
                if event.get("Type") == "SQS":
                    queue = _sam_key(_referenced(event_props.get("Queue")) or "?")
                    model["mappings"][(key, queue)] = {
                        "batch_size": event_props.get("BatchSize", 10),
                        "window": event_props.get("MaximumBatchingWindowInSeconds", 0),
                        "max_concurrency": (event_props.get("ScalingConfig") or {}).get("MaximumConcurrency"),
                        "response_types": _as_list(event_props.get("FunctionResponseTypes")),
                        "where": f"{logical_id}.Events.{event_id}",
                    }
                elif event.get("Type") in ("Schedule", "ScheduleV2"):
                    expression = event_props.get("Schedule") or event_props.get("ScheduleExpression")
                    job_input = json.loads(event_props.get("Input", "{}"))
                    model["schedules"][job_input.get("job", event_id)] = {"expression": expression, "input": job_input}

        elif kind == "AWS::Lambda::EventSourceMapping":
            function = _sam_key(_referenced(props.get("FunctionName")) or "?")
            queue = _sam_key(_referenced(props.get("EventSourceArn")) or "?")
            model["mappings"][(function, queue)] = {
                "batch_size": props.get("BatchSize", 10),
                "window": props.get("MaximumBatchingWindowInSeconds", 0),
                "max_concurrency": (props.get("ScalingConfig") or {}).get("MaximumConcurrency"),
                "response_types": _as_list(props.get("FunctionResponseTypes")),
                "where": logical_id,
            }

        elif kind == "AWS::SQS::Queue":
            redrive = props.get("RedrivePolicy") or {}
            model["queues"][_sam_key(logical_id)] = {
                "visibility": props.get("VisibilityTimeout", 30),
                "retention": props.get("MessageRetentionPeriod", 345600),
                "sse": bool(props.get("SqsManagedSseEnabled") or props.get("KmsMasterKeyId")),
                "dlq": _sam_key(_referenced(redrive.get("deadLetterTargetArn")) or "?") if redrive else None,
                "max_receive": redrive.get("maxReceiveCount") if redrive else None,
            }

        elif kind == "AWS::ApiGatewayV2::Route":
            authorization = props.get("AuthorizationType", "NONE")
            model["routes"][props.get("RouteKey")] = authorization != "NONE"

        elif kind in ("AWS::IAM::Role",):
            for policy in _as_list(props.get("Policies")):
                model["policies"] += _cfn_statements(policy.get("PolicyDocument"), f"{logical_id}.{policy.get('PolicyName')}")
        elif kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            model["policies"] += _cfn_statements(props.get("PolicyDocument"), logical_id)

        elif kind == "AWS::S3::Bucket":
            model["buckets"].setdefault(logical_id, [])

    for logical_id, resource in resources.items():
        if resource.get("Type") == "AWS::S3::BucketPolicy":
            props = resource.get("Properties") or {}
            bucket_id = _referenced(props.get("Bucket"))
            statements = _as_list((props.get("PolicyDocument") or {}).get("Statement"))
            model["buckets"].setdefault(bucket_id, [])
            model["buckets"][bucket_id] += [_bucket_statement(s, bucket_id) for s in statements]

    model_ops.sam_extend(template, model)
    return model


# --------------------------------------------------------------------------------------------
# Terraform
# --------------------------------------------------------------------------------------------


def _hcl_load(path: str) -> dict:
    # The `hcl2` module that checkov depends on (bc-python-hcl2): python-hcl2 proper installs
    # a package of the same name and cannot share checkov's environment.
    import hcl2

    with open(path, encoding="utf-8") as fh:
        return hcl2.load(fh)


def _one(value):
    """python-hcl2 wraps every attribute value in a one-element list."""
    if isinstance(value, list) and len(value) == 1:
        return value[0]
    return value


def load_terraform(root: str) -> dict:
    """{module dir relative to root ('.' for the root module): {kind: {...}}}"""
    modules = {}
    for path in sorted(glob.glob(os.path.join(root, "**", "*.tf"), recursive=True)):
        if f"{os.sep}.terraform{os.sep}" in path:
            continue
        module_dir = os.path.relpath(os.path.dirname(path), root)
        module = modules.setdefault(
            module_dir,
            {"resource": {}, "data": {}, "locals": {}, "module": {}, "output": {}, "file": {}, "providers": {"versioned": []}},
        )
        parsed = _hcl_load(path)
        for block in parsed.get("terraform", []):
            for required in block.get("required_providers", []):
                for provider, spec in required.items():
                    spec = _one(spec)
                    if isinstance(spec, dict) and spec.get("version"):
                        module["providers"]["versioned"].append(provider)
        for block in parsed.get("resource", []):
            for kind, named in block.items():
                for name, body in named.items():
                    module["resource"][(kind, name)] = body
                    module["file"][(kind, name)] = os.path.relpath(path, root)
        for block in parsed.get("data", []):
            for kind, named in block.items():
                for name, body in named.items():
                    module["data"][(kind, name)] = body
        for block in parsed.get("locals", []):
            for name, value in block.items():
                if not name.startswith("__"):
                    module["locals"][name] = _one(value)
        for block in parsed.get("module", []):
            for name, body in block.items():
                module["module"][name] = body
        for block in parsed.get("output", []):
            for name, body in block.items():
                module["output"][name] = body
    return modules


_INTERPOLATION = re.compile(r"^\$\{(.*)\}$")


def _resolve(modules: dict, module_dir: str, expression, depth: int = 0):
    """Follows var./module. references across module boundaries to a resource reference.

    Returns (module_dir, expression) of the first expression that is neither var.X nor
    module.M.O, e.g. ('modules/queues', '${aws_sqs_queue.work.arn}').
    """
    if depth > 8 or not isinstance(expression, str):
        return module_dir, expression
    match = _INTERPOLATION.match(expression)
    if not match:
        return module_dir, expression
    inner = match.group(1)
    var = re.fullmatch(r"var\.(\w+)", inner)
    if var:
        for parent_dir, parent in modules.items():
            for call in parent["module"].values():
                source = os.path.normpath(os.path.join(parent_dir, _one(call.get("source", ""))))
                if source == os.path.normpath(module_dir) and var.group(1) in call:
                    return _resolve(modules, parent_dir, _one(call[var.group(1)]), depth + 1)
        return module_dir, expression
    output = re.fullmatch(r"module\.(\w+)\.(\w+)", inner)
    if output:
        call = modules.get(module_dir, {}).get("module", {}).get(output.group(1))
        if call:
            child_dir = os.path.normpath(os.path.join(module_dir, _one(call.get("source", ""))))
            body = modules.get(child_dir, {}).get("output", {}).get(output.group(2))
            if body:
                return _resolve(modules, child_dir, _one(body.get("value")), depth + 1)
    return module_dir, expression


def _tf_queue_key(modules, module_dir, expression) -> str:
    _, resolved = _resolve(modules, module_dir, expression)
    match = re.search(r"aws_sqs_queue\.(\w+)\.arn", str(resolved))
    return match.group(1) if match else f"?{resolved}"


def _tf_function_key(expression) -> str:
    match = re.search(r'aws_lambda_(?:function|alias)\.(\w+)(?:\["(\w+)"\])?', str(expression))
    if not match:
        return f"?{expression}"
    return match.group(2) or match.group(1)


def _tf_policy_document(modules, module_dir, expression):
    match = re.fullmatch(r"\$\{data\.aws_iam_policy_document\.(\w+)\.json\}", str(expression))
    if not match:
        return None
    return modules[module_dir]["data"].get(("aws_iam_policy_document", match.group(1)))


def _tf_statements(document: dict, where: str) -> list[dict]:
    out = []
    for statement, _ in model_ops.tf_statement_entries(document):
        out.append(
            {
                "where": where,
                "effect": _one(statement.get("effect", ["Allow"])),
                "actions": _one(statement.get("actions", [[]])) or [],
                "resources": _one(statement.get("resources", [[]])) or [],
                "raw": statement,
            }
        )
    return out


def tf_model(root: str) -> dict:
    modules = load_terraform(root)
    model = {
        "functions": {},
        "queues": {},
        "mappings": {},
        "schedules": {},
        "alarms": {},
        "routes": {},
        "policies": [],
        "buckets": {},
        "problems": [],
    }

    for module_dir, module in modules.items():
        functions = module["locals"].get("functions")
        if isinstance(functions, dict):
            for key, spec in functions.items():
                model["functions"][key] = {
                    "memory": spec.get("memory"),
                    "timeout": spec.get("timeout"),
                    "ephemeral_storage": spec.get("ephemeral_storage", 512),
                    "env": sorted((spec.get("environment") or {}).keys()),
                }
            claimed = set()
            for (kind, name), body in module["resource"].items():
                if kind != "aws_lambda_function":
                    continue
                if "for_each" in body:
                    keys = [k for k in functions if k not in claimed and k not in _dedicated(module)]
                    source = "each.value"
                else:
                    keys = [name]
                    source = f"local.functions.{name}"
                claimed.update(keys)
                for attribute, field in (("memory_size", "memory"), ("timeout", "timeout")):
                    if _one(body.get(attribute)) != "${%s.%s}" % (source, field):
                        model["problems"].append(
                            ("parity", f"{module_dir}: aws_lambda_function.{name}.{attribute} must be ${{{source}.{field}}} (local.functions is what the parity check reads)")
                        )
                storage = _one(_one(body.get("ephemeral_storage", [{}])).get("size"))
                if storage != "${%s.ephemeral_storage}" % source:
                    model["problems"].append(
                        ("parity", f"{module_dir}: aws_lambda_function.{name} ephemeral_storage.size must be ${{{source}.ephemeral_storage}}")
                    )
                variables = _one(_one(body.get("environment", [{}])).get("variables"))
                if variables != "${%s.environment}" % source:
                    model["problems"].append(
                        ("parity", f"{module_dir}: aws_lambda_function.{name} environment must be ${{{source}.environment}}")
                    )
                tracing = _one(_one(body.get("tracing_config", [{}])).get("mode"))
                logging = _one(body.get("logging_config", [{}]))
                for key in keys:
                    if key in model["functions"]:
                        model["functions"][key].update(
                            {
                                "runtime": _one(body.get("runtime")),
                                "architectures": _one(body.get("architectures")),
                                "tracing": tracing,
                                "log_format": _one(logging.get("log_format")),
                                "application_log_level": _one(logging.get("application_log_level")),
                                "system_log_level": _one(logging.get("system_log_level")),
                            }
                        )

        schedules = module["locals"].get("schedules")
        if isinstance(schedules, dict):
            for name, spec in schedules.items():
                job_input = spec.get("input") or {}
                model["schedules"][job_input.get("job", name)] = {"expression": spec.get("expression"), "input": job_input}

        routes = module["locals"].get("routes")
        if isinstance(routes, dict):
            model["routes"].update({key: bool(value) for key, value in routes.items()})

        for (kind, name), body in module["resource"].items():
            where = f"{module['file'][(kind, name)]}: {kind}.{name}"
            if kind == "aws_sqs_queue":
                redrive = str(_one(body.get("redrive_policy", "")) or "")
                dlq = re.search(r"deadLetterTargetArn'?:?\s*=?\s*'?\$\{aws_sqs_queue\.(\w+)\.arn\}", redrive)
                receives = re.search(r"maxReceiveCount'?:?\s*=?\s*(\d+)", redrive)
                model["queues"][name] = {
                    "visibility": _one(body.get("visibility_timeout_seconds", [30])),
                    "retention": _one(body.get("message_retention_seconds", [345600])),
                    "sse": bool(_one(body.get("sqs_managed_sse_enabled", [False])) or body.get("kms_master_key_id")),
                    "dlq": dlq.group(1) if dlq else None,
                    "max_receive": int(receives.group(1)) if receives else None,
                }
            elif kind == "aws_lambda_event_source_mapping":
                function = _tf_function_key(_one(body.get("function_name")))
                queue = _tf_queue_key(modules, module_dir, _one(body.get("event_source_arn")))
                scaling = _one(body.get("scaling_config", [{}]))
                model["mappings"][(function, queue)] = {
                    "batch_size": _one(body.get("batch_size", [10])),
                    "window": _one(body.get("maximum_batching_window_in_seconds", [0])),
                    "max_concurrency": _one(scaling.get("maximum_concurrency")),
                    "response_types": _one(body.get("function_response_types", [[]])) or [],
                    "where": where,
                }
            elif kind in ("aws_iam_policy", "aws_iam_role_policy", "aws_s3_bucket_policy", "aws_sqs_queue_policy"):
                policy = _one(body.get("policy"))
                for_each = _one(body.get("for_each"))
                if policy == "${each.value}" and isinstance(for_each, dict):
                    policies = [(f"{where}[{k}]", v) for k, v in for_each.items()]
                else:
                    policies = [(where, policy)]
                document = None
                for policy_where, expression in policies:
                    document = _tf_policy_document(modules, module_dir, expression)
                    if document is None:
                        model["problems"].append(
                            ("no-star-resource", f"{policy_where}: policy must come from a data.aws_iam_policy_document so it can be checked")
                        )
                    elif kind in ("aws_iam_policy", "aws_iam_role_policy"):
                        model["policies"] += _tf_statements(document, policy_where)
                if kind == "aws_s3_bucket_policy":
                    bucket = re.search(r"aws_s3_bucket\.(\w+)\.(?:id|bucket)", str(_one(body.get("bucket"))))
                    bucket_key = f"{module_dir}:{bucket.group(1) if bucket else '?'}"
                    model["buckets"].setdefault(bucket_key, [])
                    for statement in (document or {}).get("statement", []):
                        model["buckets"][bucket_key].append(_tf_bucket_statement(statement, bucket.group(1) if bucket else "?"))
            elif kind == "aws_iam_role" and "inline_policy" in body:
                model["problems"].append(("no-star-resource", f"{where}: use aws_iam_role_policy with a policy document"))
            elif kind == "aws_s3_bucket":
                model["buckets"].setdefault(f"{module_dir}:{name}", [])

    model_ops.tf_extend(modules, model, root)
    return model


def _dedicated(module: dict) -> set:
    """Function keys that have their own aws_lambda_function resource (not the for_each one)."""
    return {name for (kind, name), body in module["resource"].items() if kind == "aws_lambda_function" and "for_each" not in body}


def _tf_bucket_statement(statement: dict, bucket: str) -> dict:
    principals = statement.get("principals", [])
    principal_any = any(
        _one(p.get("type")) in ("*", "AWS") and _one(p.get("identifiers")) == ["*"] for p in principals
    )
    secure = any(
        _one(c.get("test")) == "Bool" and _one(c.get("variable")) == "aws:SecureTransport" and _one(c.get("values")) == ["false"]
        for c in statement.get("condition", [])
    )
    covers = set()
    for resource in _one(statement.get("resources", [[]])) or []:
        if resource == "${aws_s3_bucket.%s.arn}" % bucket:
            covers.add("bucket")
        elif resource == "${aws_s3_bucket.%s.arn}/*" % bucket:
            covers.add("objects")
    return {
        "effect": _one(statement.get("effect", ["Allow"])),
        "principal_any": principal_any,
        "actions": _one(statement.get("actions", [[]])) or [],
        "covers": covers,
        "secure_transport_false": secure,
    }
