"""Properties of SPEC 5 that no scanner checks, on a model from model.py.

Each failure is (property, message); the property names are what `make lint-infra` prints and
what the self-test expects a broken copy to fail with.
"""

from __future__ import annotations

import re

# Actions that AWS only authorises on "*": no resource ARN exists or is known in advance.
STAR_RESOURCE_ALLOWED = {
    "ec2:CreateNetworkInterface": "Lambda creates VPC functions' ENIs with the execution role; their ARNs are not known in advance",
    "ec2:DeleteNetworkInterface": "same ENIs, deleted by Lambda",
    "ec2:AssignPrivateIpAddresses": "same ENIs",
    "ec2:UnassignPrivateIpAddresses": "same ENIs",
    "ec2:DescribeNetworkInterfaces": "Describe actions support no resource-level permissions",
    "ec2:DescribeSubnets": "Describe actions support no resource-level permissions",
    "xray:PutTraceSegments": "X-Ray supports no resource-level permissions for segment upload",
    "xray:PutTelemetryRecords": "X-Ray supports no resource-level permissions for telemetry",
    "xray:GetSamplingRules": "X-Ray supports no resource-level permissions for sampling",
    "xray:GetSamplingTargets": "X-Ray supports no resource-level permissions for sampling",
    "secretsmanager:GetRandomPassword": "generates a password; it acts on no resource",
}

# The functions behind the alias `live`, deployed gradually with alarms that roll them back.
DEPLOYED_GRADUALLY = ("api", "worker", "importer", "scheduler")
# One database connection: one request (API), one job whose lock shares it (scheduler).
ONE_CONNECTION = ("api", "scheduler")
LOGIN_SECRETS = ("secret.migrator.arn", "secret.app.arn", "secret.dev.arn")
# SPEC 3, the scheduler: each job and how often it runs.
SCHEDULER_JOBS = {
    "relay": "rate(1 minute)",
    "reap": "rate(1 minute)",
    "retention": "rate(1 day)",
    "stats": "rate(5 minutes)",
    "schedules": "rate(1 minute)",
}
# SPEC 5: dead-letter queues keep 14 days.
DLQ_RETENTION = 1209600
# SPEC 3, notifications: the functions that end tasks or imports publish their lifecycle events.
EVENT_PUBLISHERS = ("api", "worker", "importer", "scheduler")

PROPERTIES = (
    "visibility",
    "max-receive-count",
    "dlq-retention",
    "queue-sse",
    "report-batch-item-failures",
    "tls-only-bucket-policy",
    "no-star-resource",
    "bounded-connections",
    "invoked-through-alias",
    "rollback-alarms",
    "alarm-actions",
    "stats-heartbeat",
    "log-retention",
    "login-rotation",
    "provider-versions",
    "tls-only-queue-policy",
    "event-delivery",
    "dlq-alarm",
    "scheduler-jobs",
    "priority-queue",
    "event-publishing",
    "email-sending",
)


def check(model: dict, source: str) -> list[tuple[str, str]]:
    failures = list(model["problems"])
    functions, queues = model["functions"], model["queues"]

    consumed = set()
    for (function, queue), mapping in model["mappings"].items():
        consumed.add(queue)
        where = mapping["where"]
        if queue not in queues:
            failures.append(("visibility", f"{where}: reads unknown queue {queue}"))
            continue
        if function not in functions:
            failures.append(("visibility", f"{where}: unknown function {function}"))
            continue
        timeout, window = functions[function]["timeout"], mapping["window"] or 0
        needed = 6 * timeout + window
        if queues[queue]["visibility"] < needed:
            failures.append(
                (
                    "visibility",
                    f"queue {queue}: visibility timeout {queues[queue]['visibility']} s < 6 x {function} timeout {timeout} s + batching window {window} s = {needed} s",
                )
            )
        if "ReportBatchItemFailures" not in mapping["response_types"]:
            failures.append(("report-batch-item-failures", f"{where}: SQS mapping {function} <- {queue} lacks FunctionResponseTypes ReportBatchItemFailures"))

    for name, queue in queues.items():
        # checkov's SQS encryption check only knows KMS keys; SSE-SQS is checked here.
        if not queue["sse"]:
            failures.append(("queue-sse", f"queue {name}: server-side encryption is off"))
        if queue["dlq"] is None:
            if name in consumed:
                failures.append(("max-receive-count", f"queue {name} is consumed but has no redrive policy (maxReceiveCount >= 5 to a DLQ)"))
            continue
        if queue["max_receive"] is None or queue["max_receive"] < 5:
            failures.append(("max-receive-count", f"queue {name}: maxReceiveCount {queue['max_receive']} < 5"))
        dlq = queues.get(queue["dlq"])
        if dlq is None:
            failures.append(("dlq-retention", f"queue {name}: dead-letter queue {queue['dlq']} not found"))
        elif dlq["retention"] <= queue["retention"]:
            failures.append(
                ("dlq-retention", f"queue {name}: DLQ {queue['dlq']} retention {dlq['retention']} s <= source retention {queue['retention']} s")
            )

    if not model["buckets"]:
        failures.append(("tls-only-bucket-policy", f"{source}: no bucket found"))
    for bucket, statements in model["buckets"].items():
        tls_only = [
            s
            for s in statements
            if s["effect"] == "Deny"
            and s["principal_any"]
            and s["secure_transport_false"]
            and any(a in ("s3:*", "*") for a in s["actions"])
            and s["covers"] >= {"bucket", "objects"}
        ]
        if not tls_only:
            failures.append(
                (
                    "tls-only-bucket-policy",
                    f"bucket {bucket}: no policy statement denying s3:* on the bucket and its objects to any principal when aws:SecureTransport is false",
                )
            )

    for statement in model["policies"]:
        if statement["effect"] != "Allow" or "*" not in statement["resources"]:
            continue
        not_allowed = [a for a in statement["actions"] if a not in STAR_RESOURCE_ALLOWED]
        if not_allowed or not statement["actions"]:
            failures.append(
                ("no-star-resource", f"{statement['where']}: Resource \"*\" for {', '.join(not_allowed) or 'no listed action'} (these actions take an ARN)")
            )

    failures += _operations(model)
    failures += _events(model)
    failures += _priority(model)
    failures += _publishing(model)
    return [(prop, f"{source}: {message}") for prop, message in failures]


def _granting(model: dict, prefix: str) -> list[tuple[str, str, dict]]:
    """(role, sid, statement) of every role statement that allows an action starting with
    `prefix` (e.g. "events:"), or every action."""
    return [
        (role, sid, st)
        for role, statements in model["roles"].items()
        for sid, st in statements.items()
        if st["effect"] == "Allow" and any(a.startswith(prefix) or a == "*" for a in st["actions"])
    ]


def _publishing(model: dict) -> list[tuple[str, str]]:
    """The functions that publish lifecycle events name the stack's bus and may put events on it
    and nowhere else; only the worker sends email, as the configured identity only, and only
    when there is one."""
    failures = []
    buses = model["event_buses"]
    for function in EVENT_PUBLISHERS:
        env = model["env"].get(function)
        if env is None:
            continue
        bus = env.get("TMS_EVENT_BUS")
        if bus not in buses:
            failures.append(("event-publishing", f"function {function}: TMS_EVENT_BUS is {bus!r}, not the name of an event bus of the stack"))
            continue
        arn = buses[bus]["arn"]
        granted = [st for role, _sid, st in _granting(model, "events:") if role == function]
        if not any("events:PutEvents" in st["actions"] and st["resources"] == [arn] for st in granted):
            failures.append(("event-publishing", f"function {function}: its role has no events:PutEvents on {arn} (the bus TMS_EVENT_BUS names)"))
    for role, sid, st in _granting(model, "events:"):
        if role not in EVENT_PUBLISHERS:
            failures.append(("event-publishing", f"role {role} {sid}: {st['actions']} on {st['resources']}, but {role} publishes no events"))
        elif any(r not in {b["arn"] for b in buses.values()} for r in st["resources"]):
            failures.append(("event-publishing", f"role {role} {sid}: {st['actions']} on {st['resources']}, beyond the stack's event bus"))

    identity = (model["env"].get("worker") or {}).get("TMS_EMAIL_IDENTITY")
    if "worker" in model["env"] and identity is None:
        failures.append(("email-sending", "function worker: no TMS_EMAIL_IDENTITY (the identity email is sent from)"))
    if "worker" in model["env"] and "TMS_EMAIL_DELIVER" not in model["env"]["worker"]:
        failures.append(("email-sending", "function worker: no TMS_EMAIL_DELIVER (whether email is delivered by default)"))
    expected = f"arn:{{partition}}:ses:{{region}}:{{account}}:identity/{identity}"
    for role, sid, st in _granting(model, "ses:"):
        where = f"role {role} {sid}: {st['actions']} on {st['resources']}"
        if role != "worker":
            failures.append(("email-sending", f"{where}, but only the worker sends email"))
        elif st["actions"] != ["ses:SendEmail"] or st["resources"] != [expected]:
            failures.append(("email-sending", f"{where}, expected ses:SendEmail on {expected} only (the identity TMS_EMAIL_IDENTITY names)"))
        elif st.get("when") != f"{identity} != ''":
            failures.append(("email-sending", f"{where} granted {st.get('when') or 'always'}, expected only when {identity} is set"))
    return failures


def _operations(model: dict) -> list[tuple[str, str]]:
    """What production needs beyond the queues: bounded connections, gradual deployments that
    roll back, alarms that notify, logs that expire, rotated logins, pinned providers."""
    failures = []
    for function, env in model["env"].items():
        if "TMS_DATABASE_URL" not in env or function == "bootstrap":
            continue
        pool = env.get("TMS_DATABASE_POOL_SIZE")
        if not (isinstance(pool, str) and pool.isdigit() and int(pool) >= 1):
            failures.append(("bounded-connections", f"function {function}: TMS_DATABASE_POOL_SIZE is {pool!r}, not a fixed size (connections = concurrency x pool)"))
        elif function in ONE_CONNECTION and pool != "1":
            failures.append(("bounded-connections", f"function {function}: TMS_DATABASE_POOL_SIZE {pool}, expected 1 (one request or one job at a time)"))
    for (function, queue), mapping in model["mappings"].items():
        if not mapping.get("max_concurrency"):
            failures.append(("bounded-connections", f"{mapping['where']}: SQS mapping {function} <- {queue} has no maximum concurrency (its connections are unbounded)"))

    for function in DEPLOYED_GRADUALLY:
        ops = model["function_ops"].get(function)
        if ops is None:
            continue
        if ops.get("alias") != "live":
            failures.append(("invoked-through-alias", f"function {function}: not published behind the alias live"))
        if not ops.get("deployment"):
            failures.append(("rollback-alarms", f"function {function}: no deployment preference (CodeDeploy)"))
        elif not ops.get("rollback_alarms"):
            failures.append(("rollback-alarms", f"function {function}: deployed without alarms to roll it back"))
        for alarm in ops.get("rollback_alarms", []):
            if alarm not in {str(key) for key in model["alarms"]}:
                failures.append(("rollback-alarms", f"function {function}: rollback alarm {alarm} is not an alarm of the stack"))
    for (kind, name), through_alias in model["invocations"].items():
        if not through_alias:
            failures.append(("invoked-through-alias", f"{kind} {name}: invokes the function itself, not its alias live (a gradual deployment would not apply)"))

    for key, alarm in model["alarms"].items():
        if not alarm.get("actions") or not alarm.get("ok_actions"):
            failures.append(("alarm-actions", f"alarm {key}: no alarm or OK action (nobody would be told)"))
        if alarm.get("treat_missing") in (None, "missing"):
            failures.append(("alarm-actions", f"alarm {key}: missing data is not handled explicitly (TreatMissingData)"))
    heartbeats = [key for key, alarm in model["alarms"].items() if key[0] == "TMS" and alarm.get("treat_missing") == "breaching"]
    if not heartbeats:
        failures.append(("stats-heartbeat", "no alarm on the stats job's gauges treats missing data as breaching (a stopped scheduler would go unnoticed)"))

    for name, retention in model["log_groups"].items():
        if retention in (None, "<expr>"):
            failures.append(("log-retention", f"log group {name}: no retention"))

    for secret in LOGIN_SECRETS:
        if not model["rotations"].get(secret):
            failures.append(("login-rotation", f"{secret}: not rotated"))

    for module, providers in (model.get("providers") or {}).items():
        for provider in providers["used"]:
            if provider not in providers["versioned"]:
                failures.append(("provider-versions", f"module {module}: provider {provider} has no version constraint in required_providers"))
    return failures


def _allows(statements: dict, principal: str, action: str, resource: str, source_arn: str) -> bool:
    """Whether a queue policy lets `principal` do `action` on `resource`, only from `source_arn`."""
    return any(
        st["effect"] == "Allow"
        and principal in st["principals"]
        and action in st["actions"]
        and resource in st["resources"]
        and f"ArnEquals aws:SourceArn {[source_arn]}" in st["conditions"]
        for st in statements.values()
    )


def _events(model: dict) -> list[tuple[str, str]]:
    """Queue policies that refuse plain HTTP; event rules that deliver to queues of the stack
    which let them, with a retry policy and a dead-letter queue that lets them too; an alarm on
    every dead-letter queue; the scheduler's jobs on their schedules."""
    failures = []
    queues, policies = model["queues"], model["queue_policies"]

    for queue, statements in policies.items():
        tls_only = [
            st for st in statements.values()
            if st["effect"] == "Deny"
            and st["principals"] == ["*"]
            and any(a in ("sqs:*", "*") for a in st["actions"])
            and f"queue.{queue}.arn" in st["resources"]
            and "Bool aws:SecureTransport ['false']" in st["conditions"]
        ]
        if not tls_only:
            failures.append(("tls-only-queue-policy", f"queue {queue}: its policy has no statement denying sqs:* to any principal when aws:SecureTransport is false"))

    event_dlqs = set()
    for name, rule in model["event_rules"].items():
        where = rule["where"]
        if rule["bus"] not in model["event_buses"]:
            failures.append(("event-delivery", f"{where}: rule {name} is on {rule['bus']}, not on an event bus of the stack"))
        if not rule["targets"]:
            failures.append(("event-delivery", f"{where}: rule {name} has no target"))
        for target_id, target in rule["targets"].items():
            label = f"{where}: rule {name} target {target_id}"
            arn = re.fullmatch(r"queue\.(\w+)\.arn", str(target["arn"]))
            if not arn or arn.group(1) not in queues:
                failures.append(("event-delivery", f"{label}: delivers to {target['arn']}, not to a queue of the stack"))
            elif not _allows(policies.get(arn.group(1), {}), "Service:events.amazonaws.com", "sqs:SendMessage", target["arn"], rule["arn"]):
                failures.append(("event-delivery", f"{label}: the policy of queue {arn.group(1)} does not let events.amazonaws.com send from {rule['arn']} (aws:SourceArn)"))
            if target["retry_attempts"] is None or target["max_age"] is None:
                failures.append(("event-delivery", f"{label}: no retry policy (maximum retry attempts and event age)"))
            dlq = re.fullmatch(r"queue\.(\w+)\.arn", str(target["dlq"]))
            if not dlq or dlq.group(1) not in queues:
                failures.append(("event-delivery", f"{label}: no dead-letter queue of the stack (undeliverable events would be dropped)"))
                continue
            event_dlqs.add(dlq.group(1))
            if dlq.group(1) == (arn.group(1) if arn else None):
                failures.append(("event-delivery", f"{label}: the dead-letter queue is the target itself"))
            if queues[dlq.group(1)]["retention"] < DLQ_RETENTION:
                failures.append(("event-delivery", f"{label}: dead-letter queue {dlq.group(1)} keeps {queues[dlq.group(1)]['retention']} s < {DLQ_RETENTION} s (14 days)"))
            if not _allows(policies.get(dlq.group(1), {}), "Service:events.amazonaws.com", "sqs:SendMessage", target["dlq"], rule["arn"]):
                failures.append(("event-delivery", f"{label}: the policy of dead-letter queue {dlq.group(1)} does not let events.amazonaws.com send from {rule['arn']} (aws:SourceArn)"))

    dlqs = {q["dlq"] for q in queues.values() if q["dlq"]} | event_dlqs
    for dlq in sorted(dlqs):
        depth = [
            alarm for key, alarm in model["alarms"].items()
            if key[:4] == ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", dlq)
            and alarm["threshold"] == 0 and alarm["comparison"] == "GreaterThanThreshold"
        ]
        if not depth:
            failures.append(("dlq-alarm", f"dead-letter queue {dlq}: no alarm on its depth > 0"))

    for job, expression in SCHEDULER_JOBS.items():
        schedule = model["schedules"].get(job)
        if schedule is None:
            failures.append(("scheduler-jobs", f"job {job}: not scheduled (SPEC 3: {expression})"))
        elif schedule["expression"] != expression or schedule["input"] != {"job": job}:
            failures.append(("scheduler-jobs", f"job {job}: {schedule['expression']} with input {schedule['input']}, expected {expression} with input {{'job': '{job}'}}"))
    return failures


# SPEC 2 and 3, flow control: `high` tasks travel on a work queue of their own; each queue of the
# work path and its twin.
PRIORITY_TWINS = {"work": "high_work", "work_dlq": "high_work_dlq"}


def _priority(model: dict) -> list[tuple[str, str]]:
    """The high-priority work queue beside the work queue: its settings, a dead-letter queue of
    its own (the same receives, retention and encryption as the work DLQ), a mapping of its own
    to each function the work queue's mapping invokes (the same batching, concurrency and
    response types), the work queues' alarms again for it, its URL in every function that has
    the work queue's (TMS_HIGH_WORK_QUEUE_URL) and in the outputs, and on it every role exactly
    the actions the role has on the work queue."""
    failures = []
    queues, twins = model["queues"], PRIORITY_TWINS
    if "work" not in queues:
        return failures
    high = queues.get("high_work")
    if high is None:
        return [("priority-queue", "no high-priority work queue (high_work) beside the work queue")]
    for field in ("visibility", "retention", "sse", "max_receive"):
        if high[field] != queues["work"][field]:
            failures.append(("priority-queue", f"queue high_work: {field} {high[field]!r}, the work queue's is {queues['work'][field]!r}"))
    if high["dlq"] != "high_work_dlq" or "high_work_dlq" not in queues:
        failures.append(("priority-queue", f"queue high_work: dead-letters to {high['dlq']!r}, not to a DLQ of its own (high_work_dlq)"))
    elif "work_dlq" in queues:
        for field in ("retention", "sse"):
            if queues["high_work_dlq"][field] != queues["work_dlq"][field]:
                failures.append(("priority-queue", f"queue high_work_dlq: {field} {queues['high_work_dlq'][field]!r}, the work DLQ's is {queues['work_dlq'][field]!r}"))

    mappings = model["mappings"]
    for (function, queue), mapping in sorted(mappings.items()):
        if queue != "work":
            continue
        twin = mappings.get((function, "high_work"))
        if twin is None:
            failures.append(("priority-queue", f"{mapping['where']}: {function} reads the work queue but has no mapping from high_work"))
            continue
        for field in ("batch_size", "window", "max_concurrency", "response_types"):
            if twin[field] != mapping[field]:
                failures.append(("priority-queue", f"{twin['where']}: {function} <- high_work {field} {twin[field]!r}, the work queue's mapping has {mapping[field]!r}"))
    for (function, queue), mapping in sorted(mappings.items()):
        if queue == "high_work" and (function, "work") not in mappings:
            failures.append(("priority-queue", f"{mapping['where']}: {function} reads high_work but not the work queue"))

    alarms = model["alarms"]
    for key, alarm in sorted(alarms.items(), key=str):
        namespace, metric, dimension, target, statistic = key
        if namespace != "AWS/SQS" or dimension != "QueueName" or target not in twins:
            continue
        twin = alarms.get((namespace, metric, dimension, twins[target], statistic))
        if twin is None:
            failures.append(("priority-queue", f"alarm {key}: none on {twins[target]} ({metric} {statistic})"))
            continue
        for field in ("period", "evaluation_periods", "datapoints", "threshold", "comparison", "treat_missing", "actions", "ok_actions"):
            if twin.get(field) != alarm.get(field):
                failures.append(("priority-queue", f"alarm {metric} on {twins[target]}: {field} {twin.get(field)!r}, {target}'s has {alarm.get(field)!r}"))

    for function, env in sorted(model["env"].items()):
        if env.get("TMS_WORK_QUEUE_URL") == "queue.work.url" and env.get("TMS_HIGH_WORK_QUEUE_URL") != "queue.high_work.url":
            failures.append(("priority-queue", f"function {function}: sends work messages but TMS_HIGH_WORK_QUEUE_URL is {env.get('TMS_HIGH_WORK_QUEUE_URL')!r}, not the high_work queue's URL"))
    outputs = {str(v) for v in model["outputs"].values()}
    for queue, twin in twins.items():
        if f"queue.{queue}.url" in outputs and f"queue.{twin}.url" not in outputs:
            failures.append(("priority-queue", f"outputs: {queue}'s URL is an output, {twin}'s is not"))

    for role, statements in sorted(model["roles"].items()):
        on_work, on_high = _actions_on(statements, "queue.work.arn"), _actions_on(statements, "queue.high_work.arn")
        if on_work != on_high:
            failures.append(("priority-queue", f"role {role}: {on_work} on the work queue but {on_high} on high_work"))
    return failures


def _actions_on(statements: dict, resource: str) -> list[str]:
    """The actions a role's statements allow on `resource`."""
    return sorted({a for st in statements.values() if st["effect"] == "Allow" and resource in st["resources"] for a in st["actions"]})
