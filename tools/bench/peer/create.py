"""POST /v1/tasks as a Python team would write it for AWS Lambda: the peer `make bench` measures
the API function against, under the same Runtime API and with the same services.

awslambdaric runs `handler`; boto3 reads the token map and the database password from SSM (once
per execution environment) and sends the work message; psycopg writes the task and its first
event in one statement over TLS, on a connection kept for the environment's life.
"""
import base64
import hashlib
import json
import os
import uuid

import boto3
import psycopg
from psycopg.types.json import Jsonb

ssm = boto3.client("ssm")
sqs = boto3.client("sqs")

KINDS = {"email", "webhook", "archive", "noop"}

INSERT = """
WITH ins AS (
    INSERT INTO tms.tasks (id, tenant, kind, payload, max_attempts, run_after, request_hash,
                           correlation_id, source)
    VALUES (%s, %s, %s, %s, 5, now(), %s, %s, 'api')
    RETURNING id, tenant, kind, status, attempts, max_attempts, run_after, correlation_id,
              created_at
), ev AS (
    INSERT INTO tms.task_events (task_id, from_status, to_status, attempt, correlation_id)
    SELECT id, NULL, status, attempts, correlation_id FROM ins
)
SELECT id, tenant, kind, status, attempts, max_attempts, run_after, correlation_id, created_at
FROM ins
"""

_tokens = None
_connection = None


def parameter(name):
    return ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]


def tokens():
    global _tokens
    if _tokens is None:
        _tokens = json.loads(parameter(os.environ["TMS_TOKENS_PARAM"]))
    return _tokens


def connection():
    global _connection
    if _connection is None or _connection.closed:
        _connection = psycopg.connect(
            os.environ["TMS_DATABASE_URL"],
            password=parameter(os.environ["TMS_DATABASE_PASSWORD_PARAM"]),
            sslmode="verify-full",
            sslrootcert=os.environ["TMS_DATABASE_CA_FILE"],
            autocommit=True,
        )
    return _connection


def problem(status, title):
    return {
        "statusCode": status,
        "headers": {"content-type": "application/problem+json"},
        "body": json.dumps({"status": status, "title": title}),
    }


def handler(event, context):
    headers = event.get("headers") or {}
    token = headers.get("authorization", "").removeprefix("Bearer ")
    tenant = tokens().get(hashlib.sha256(token.encode()).hexdigest())
    if tenant is None:
        return problem(401, "unauthorized")
    raw = event.get("body") or ""
    raw = base64.b64decode(raw) if event.get("isBase64Encoded") else raw.encode()
    try:
        body = json.loads(raw)
    except ValueError:
        return problem(400, "the body is not JSON")
    kind, payload = body.get("kind"), body.get("payload", {})
    if kind not in KINDS or not isinstance(payload, dict):
        return problem(422, "kind or payload is invalid")
    correlation_id = headers.get("x-correlation-id") or str(uuid.uuid4())
    row = connection().execute(
        INSERT,
        (uuid.uuid4(), tenant, kind, Jsonb(payload), hashlib.sha256(raw).digest(), correlation_id),
    ).fetchone()
    task_id, tenant, kind, status, attempts, max_attempts, run_after, correlation_id, created = row
    sqs.send_message(
        QueueUrl=os.environ["TMS_WORK_QUEUE_URL"],
        MessageBody=json.dumps({"task_id": str(task_id), "tenant": tenant}),
    )
    task = {
        "id": str(task_id),
        "tenant": tenant,
        "kind": kind,
        "status": status,
        "attempts": attempts,
        "max_attempts": max_attempts,
        "run_after": run_after.isoformat(),
        "correlation_id": correlation_id,
        "created_at": created.isoformat(),
    }
    return {
        "statusCode": 202,
        "headers": {"content-type": "application/json", "location": f"/v1/tasks/{task_id}"},
        "body": json.dumps(task),
    }
