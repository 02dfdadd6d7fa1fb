# The five functions: one role, one log group each; sizes, environments, mappings and schedules
# equal to template.yaml (checked by tools/infra/parity.py, which reads these locals).
#
# Memory and timeouts. Lambda's CPU share grows with memory; these functions wait on the
# database and AWS APIs far more than they compute.
# - api 256 MB / 29 s: one request at a time; 29 s is API Gateway's integration ceiling.
# - worker 512 MB / 60 s: up to 10 tasks executed concurrently (webhooks time out at 10 s).
# - importer 1024 MB / 900 s: streams one object per invocation (memory stays bounded, the extra
#   CPU speeds gzip and COPY encoding); 900 s is Lambda's maximum for large files.
#   Ephemeral storage 1024 MB, for the default import limits: /tmp holds the created tasks' log
#   (24 B x 2,000,000 rows, TMS_IMPORT_MAX_ROWS = 48 MB) and the errors file (at most 10,000
#   lines, TMS_IMPORT_MAX_ERRORS, of a line number and a reason cut at 1 KiB: about 10,000 x
#   1.1 KiB = 11 MB). 48 MB + 11 MB is well inside Lambda's 512 MB default; 1024 MB leaves room
#   for raised limits (the rows limit costs 24 B a row, the errors one ~1.1 KiB). A full /tmp
#   fails the import (temporary storage); it is not retried. The other functions keep 512 MB.
# - scheduler 256 MB / 120 s: bounded batches; each job stops well before the timeout. The reap
#   job's TMS_IMPORT_STALE_AFTER_SECONDS default, 960 s, is the importer's timeout and a minute:
#   900 s is Lambda's maximum, so an import running longer has lost its importer.
# - bootstrap 256 MB / 300 s: DDL and migrations; long migrations need more than a minute.
#
# Database pools (TMS_DATABASE_POOL_SIZE), sized for what one execution does at a time: the API
# serves one request, the scheduler runs one job (its lock shares the connection) - one each; the
# worker and the importer two (the connection a batch or an import works on, and one spare
# for what runs beside it). Connections at most = concurrency x pool; README, "Database connections".
#
# The API, the worker, the importer and the scheduler are published as versions behind the alias
# `live`, which the API integration, the event source mappings and the schedules invoke. CodeDeploy
# shifts the alias to a new version (deployment_strategy; the scheduler all at once) and shifts it
# back when one of the function's alarms fires (deploy.tf).

data "aws_partition" "current" {}
data "aws_region" "current" {}
data "aws_caller_identity" "current" {}

# HMAC key of the API's pagination cursors: stable for the stack's life.
resource "random_password" "cursor_key" {
  length  = 48
  special = false
}

locals {
  ssm_arn_prefix = "arn:${data.aws_partition.current.partition}:ssm:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:parameter"
  # Through RDS Proxy when there is one (API, worker); the instance itself for the scheduler's
  # session locks and the importer's import sessions.
  proxied_database_url = "postgres://tms_app@${coalesce(var.database.proxy_host, var.database.host)}:${var.database.port}/${var.database.name}"
  direct_database_url  = "postgres://tms_app@${var.database.host}:${var.database.port}/${var.database.name}"
  # Parameter Store's references to Secrets Manager, by secret name (the form it documents): a
  # secret's ARN is its name, a hyphen and six random characters.
  secret_reference = {
    for user, arn in {
      admin    = var.database.admin_secret_arn
      migrator = var.database.migrator_secret_arn
      app      = var.database.app_secret_arn
      dev      = var.database.dev_secret_arn
    } : user => "/aws/reference/secretsmanager/${regex("secret:(.+)-[A-Za-z0-9]{6}$", arn)[0]}"
  }
  app_password = local.secret_reference["app"]
  ca_file      = "/opt/tms/rds-ca-bundle.pem"
  login_secrets = {
    migrator = var.database.migrator_secret_arn
    app      = var.database.app_secret_arn
    dev      = var.database.dev_secret_arn
  }

  functions = {
    api = {
      description       = "TMS HTTP API (API Gateway HTTP API, payload format 2.0)"
      memory            = 256
      timeout           = 29
      ephemeral_storage = 512
      environment = {
        TMS_WORK_QUEUE_URL          = var.work_queue_url
        TMS_HIGH_WORK_QUEUE_URL     = var.high_work_queue_url
        TMS_BUCKET                  = var.bucket_name
        TMS_TOKENS_PARAM            = var.tokens_parameter_name
        TMS_CURSOR_KEY              = random_password.cursor_key.result
        TMS_WEBHOOK_ALLOW           = ""
        TMS_DATABASE_URL            = local.proxied_database_url
        TMS_DATABASE_SSLMODE        = "verify-full"
        TMS_DATABASE_CA_FILE        = local.ca_file
        TMS_DATABASE_PASSWORD_PARAM = local.app_password
        TMS_DATABASE_POOL_SIZE      = "1"
        TMS_OIDC_ISSUER             = var.oidc_issuer
        TMS_OIDC_CLIENT_ID          = var.console_oidc_client_id
        TMS_EVENT_BUS               = var.event_bus_name
      }
      reserved_concurrency = var.api_reserved_concurrency
      deployment           = var.deployment_strategy
    }
    worker = {
      description       = "TMS worker (work queue consumer)"
      memory            = 512
      timeout           = 60
      ephemeral_storage = 512
      environment = {
        TMS_WORK_QUEUE_URL          = var.work_queue_url
        TMS_HIGH_WORK_QUEUE_URL     = var.high_work_queue_url
        TMS_WORK_DLQ_URL            = var.work_dlq_url
        TMS_BUCKET                  = var.bucket_name
        TMS_PRODUCERS_PARAM         = var.producers_parameter_name
        TMS_WEBHOOK_ALLOW           = ""
        TMS_DATABASE_URL            = local.proxied_database_url
        TMS_DATABASE_SSLMODE        = "verify-full"
        TMS_DATABASE_CA_FILE        = local.ca_file
        TMS_DATABASE_PASSWORD_PARAM = local.app_password
        TMS_DATABASE_POOL_SIZE      = "2"
        TMS_EVENT_BUS               = var.event_bus_name
        TMS_EMAIL_IDENTITY          = var.email_identity
        TMS_EMAIL_DELIVER           = tostring(var.email_deliver_default)
      }
      reserved_concurrency = 0
      deployment           = var.deployment_strategy
    }
    importer = {
      description       = "TMS importer (S3 notifications through the import queue)"
      memory            = 1024
      timeout           = 900
      ephemeral_storage = 1024
      environment = {
        TMS_WORK_QUEUE_URL          = var.work_queue_url
        TMS_HIGH_WORK_QUEUE_URL     = var.high_work_queue_url
        TMS_BUCKET                  = var.bucket_name
        TMS_DATABASE_URL            = local.direct_database_url
        TMS_DATABASE_SSLMODE        = "verify-full"
        TMS_DATABASE_CA_FILE        = local.ca_file
        TMS_DATABASE_PASSWORD_PARAM = local.app_password
        TMS_DATABASE_POOL_SIZE      = "2"
        TMS_EVENT_BUS               = var.event_bus_name
      }
      reserved_concurrency = 0
      deployment           = var.deployment_strategy
    }
    scheduler = {
      description       = "TMS scheduled jobs (relay, reap, retention, stats, schedules)"
      memory            = 256
      timeout           = 120
      ephemeral_storage = 512
      environment = {
        TMS_WORK_QUEUE_URL          = var.work_queue_url
        TMS_HIGH_WORK_QUEUE_URL     = var.high_work_queue_url
        TMS_RETENTION_DAYS          = tostring(var.task_retention_days)
        TMS_EVENT_BUS               = var.event_bus_name
        TMS_DATABASE_URL            = local.direct_database_url
        TMS_DATABASE_SSLMODE        = "verify-full"
        TMS_DATABASE_CA_FILE        = local.ca_file
        TMS_DATABASE_PASSWORD_PARAM = local.app_password
        TMS_DATABASE_POOL_SIZE      = "1"
      }
      reserved_concurrency = 0
      deployment           = "AllAtOnce"
    }
    bootstrap = {
      description       = "TMS database bootstrapper (roles, privileges, schema, migrations)"
      memory            = 256
      timeout           = 300
      ephemeral_storage = 512
      environment = {
        TMS_DATABASE_URL            = "postgres://${var.database.admin_user}@${var.database.host}:${var.database.port}/${var.database.name}"
        TMS_DATABASE_SSLMODE        = "verify-full"
        TMS_DATABASE_CA_FILE        = local.ca_file
        TMS_ADMIN_SECRET_PARAM      = local.secret_reference["admin"]
        TMS_MIGRATOR_PASSWORD_PARAM = local.secret_reference["migrator"]
        TMS_APP_PASSWORD_PARAM      = local.app_password
        TMS_DEV_PASSWORD_PARAM      = local.secret_reference["dev"]
      }
      reserved_concurrency = 0
      deployment           = ""
    }
  }

  schedules = {
    relay     = { expression = "rate(1 minute)", input = { job = "relay" } }
    reap      = { expression = "rate(1 minute)", input = { job = "reap" } }
    retention = { expression = "rate(1 day)", input = { job = "retention" } }
    stats     = { expression = "rate(5 minutes)", input = { job = "stats" } }
    schedules = { expression = "rate(1 minute)", input = { job = "schedules" } }
  }

  # The bootstrapper first: the other functions are created (and updated) after it has run.
  app_functions = { for key, fn in local.functions : key => fn if key != "bootstrap" }
}

resource "aws_lambda_layer_version" "rds_ca" {
  layer_name               = "${var.name}-rds-ca"
  description              = "RDS CA bundle at /opt/tms/rds-ca-bundle.pem (prepared by scripts/rds-ca-bundle.sh)"
  filename                 = var.ca_layer_zip
  source_code_hash         = filebase64sha256(var.ca_layer_zip)
  compatible_runtimes      = ["provided.al2023"]
  compatible_architectures = ["arm64"]
}

resource "aws_cloudwatch_log_group" "function" {
  # checkov:skip=CKV_AWS_158:CloudWatch Logs encrypts at rest by default; logs never carry secrets or payloads at INFO (SPEC 5), so a customer-managed key adds cost without a new boundary.
  # checkov:skip=CKV_AWS_338:Operational logs are kept log_retention_days (30 by default); the tasks' durable history is task_events in PostgreSQL, not the logs.
  for_each = local.functions

  name              = "/aws/lambda/${var.name}-${each.key}"
  retention_in_days = var.log_retention_days
}

resource "aws_lambda_function" "bootstrap" {
  # checkov:skip=CKV_AWS_116:Invoked synchronously by Terraform (and CloudFormation); no asynchronous event to dead-letter.
  # checkov:skip=CKV_AWS_115:Runs once per apply; reserved concurrency would fail applies in accounts with a low concurrency quota.
  # checkov:skip=CKV_AWS_173:Environment variables hold names, URLs and ARNs only - secrets are read from SSM/Secrets Manager at run time.
  # checkov:skip=CKV_AWS_272:Code signing needs a signing profile and signed artifacts that cargo lambda does not produce; artifacts come from this repository's build.
  function_name    = "${var.name}-bootstrap"
  description      = local.functions.bootstrap.description
  role             = aws_iam_role.function["bootstrap"].arn
  filename         = "${var.artifacts_dir}/tms-bootstrap/bootstrap.zip"
  source_code_hash = filebase64sha256("${var.artifacts_dir}/tms-bootstrap/bootstrap.zip")
  handler          = "bootstrap"
  runtime          = "provided.al2023"
  architectures    = ["arm64"]
  memory_size      = local.functions.bootstrap.memory
  timeout          = local.functions.bootstrap.timeout
  layers           = [aws_lambda_layer_version.rds_ca.arn]

  ephemeral_storage {
    size = local.functions.bootstrap.ephemeral_storage
  }

  tracing_config {
    mode = "Active"
  }

  vpc_config {
    subnet_ids         = var.subnet_ids
    security_group_ids = var.security_group_ids
  }

  logging_config {
    log_format            = "JSON"
    application_log_level = "INFO"
    system_log_level      = "WARN"
    log_group             = aws_cloudwatch_log_group.function["bootstrap"].name
  }

  environment {
    variables = local.functions.bootstrap.environment
  }

  depends_on = [aws_iam_role_policy.function, aws_iam_role_policy_attachment.network_and_tracing]
}

# Roles, grants, schema and migrations on every apply (timestamp() changes each run, like the
# SAM stack's DeployId), before the other functions are updated. With the CRUD scope the
# function also sees create/update/delete in the input's "tf" key; delete keeps the data.
resource "aws_lambda_invocation" "bootstrap" {
  function_name   = aws_lambda_function.bootstrap.function_name
  input           = jsonencode({ action = "bootstrap" })
  lifecycle_scope = "CRUD"

  triggers = {
    deploy = timestamp()
    egress = var.egress_ready
  }
}

resource "aws_lambda_function" "this" {
  # checkov:skip=CKV_AWS_116:Not invoked asynchronously except by EventBridge schedules that fire again a minute later; SQS-driven failures go to the queues' own DLQs.
  # checkov:skip=CKV_AWS_115:Concurrency is bounded by the event source mappings' maximum concurrency, the API stage throttling and, optionally, api_reserved_concurrency (off by default); reserving by default would fail applies in accounts with a low concurrency quota.
  # checkov:skip=CKV_AWS_173:Environment variables hold names, URLs and ARNs only - secrets are read from SSM/Secrets Manager at run time.
  # checkov:skip=CKV_AWS_272:Code signing needs a signing profile and signed artifacts that cargo lambda does not produce; artifacts come from this repository's build.
  for_each = local.app_functions

  function_name    = "${var.name}-${each.key}"
  description      = each.value.description
  role             = aws_iam_role.function[each.key].arn
  filename         = "${var.artifacts_dir}/tms-${each.key}/bootstrap.zip"
  source_code_hash = filebase64sha256("${var.artifacts_dir}/tms-${each.key}/bootstrap.zip")
  handler          = "bootstrap"
  runtime          = "provided.al2023"
  architectures    = ["arm64"]
  memory_size      = each.value.memory
  timeout          = each.value.timeout
  layers           = [aws_lambda_layer_version.rds_ca.arn]
  # Each change is a new version; the alias `live` moves to it through CodeDeploy (deploy.tf).
  publish                        = true
  reserved_concurrent_executions = each.value.reserved_concurrency > 0 ? each.value.reserved_concurrency : -1

  ephemeral_storage {
    size = each.value.ephemeral_storage
  }

  tracing_config {
    mode = "Active"
  }

  vpc_config {
    subnet_ids         = var.subnet_ids
    security_group_ids = var.security_group_ids
  }

  logging_config {
    log_format            = "JSON"
    application_log_level = "INFO"
    system_log_level      = "WARN"
    log_group             = aws_cloudwatch_log_group.function[each.key].name
  }

  environment {
    variables = each.value.environment
  }

  depends_on = [aws_lambda_invocation.bootstrap, aws_iam_role_policy.function, aws_iam_role_policy_attachment.network_and_tracing]
}

# MaximumConcurrency bounds the worker's database connections: 10 x 2 for each of the two work
# queues.
resource "aws_lambda_event_source_mapping" "worker" {
  event_source_arn                   = var.work_queue_arn
  function_name                      = aws_lambda_alias.live["worker"].arn
  batch_size                         = 10
  maximum_batching_window_in_seconds = 1
  function_response_types            = ["ReportBatchItemFailures"]

  scaling_config {
    maximum_concurrency = 10
  }
}

# The `high` tasks' queue, with pollers and concurrency of its own: a backlog on the work queue
# never delays them.
resource "aws_lambda_event_source_mapping" "worker_high" {
  event_source_arn                   = var.high_work_queue_arn
  function_name                      = aws_lambda_alias.live["worker"].arn
  batch_size                         = 10
  maximum_batching_window_in_seconds = 1
  function_response_types            = ["ReportBatchItemFailures"]

  scaling_config {
    maximum_concurrency = 10
  }
}

# One file per invocation; at most two imports load the database at once (2 x 2 connections).
resource "aws_lambda_event_source_mapping" "importer" {
  event_source_arn                   = var.import_queue_arn
  function_name                      = aws_lambda_alias.live["importer"].arn
  batch_size                         = 1
  maximum_batching_window_in_seconds = 0
  function_response_types            = ["ReportBatchItemFailures"]

  scaling_config {
    maximum_concurrency = 2
  }
}

resource "aws_cloudwatch_event_rule" "job" {
  for_each = local.schedules

  name                = "${var.name}-${each.key}"
  description         = "TMS scheduled job ${each.key}"
  schedule_expression = each.value.expression
}

resource "aws_cloudwatch_event_target" "job" {
  for_each = local.schedules

  rule  = aws_cloudwatch_event_rule.job[each.key].name
  arn   = aws_lambda_alias.live["scheduler"].arn
  input = jsonencode(each.value.input)
}

resource "aws_lambda_permission" "job" {
  for_each = local.schedules

  statement_id  = "schedule-${each.key}"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.this["scheduler"].function_name
  qualifier     = aws_lambda_alias.live["scheduler"].name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.job[each.key].arn
}

# Secrets Manager invokes the bootstrapper with the four rotation steps (createSecret,
# setSecret, testSecret, finishSecret) for each login secret, once the bootstrap created the
# users. Not at once on creation: the first rotation comes with the schedule.
resource "aws_lambda_permission" "rotation" {
  for_each = local.login_secrets

  statement_id  = "rotate-${each.key}"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.bootstrap.function_name
  principal     = "secretsmanager.amazonaws.com"
  source_arn    = each.value
}

resource "aws_secretsmanager_secret_rotation" "login" {
  # checkov:skip=CKV_AWS_304:Rotated every login_rotation_days, which the root module validates to at most 90 (30 by default); this check cannot follow the variable into the module.
  for_each = local.login_secrets

  secret_id           = each.value
  rotation_lambda_arn = aws_lambda_function.bootstrap.arn
  rotate_immediately  = false

  rotation_rules {
    automatically_after_days = var.login_rotation_days
  }

  depends_on = [aws_lambda_invocation.bootstrap, aws_lambda_permission.rotation]
}
