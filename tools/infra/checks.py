"""Properties of SPEC 5 that no scanner checks, on a model from model.py.

Each failure is (property, message); the property names are what `make lint-infra` prints and
what the self-test expects a broken copy to fail with.
"""

from __future__ import annotations

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
}

PROPERTIES = (
    "visibility",
    "max-receive-count",
    "dlq-retention",
    "queue-sse",
    "report-batch-item-failures",
    "tls-only-bucket-policy",
    "no-star-resource",
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

    return [(prop, f"{source}: {message}") for prop, message in failures]
