# One role per function, least privilege. The only "*" resources are the ones AWS requires: the
# ENI actions of VPC functions and X-Ray's segment upload (allow-listed in tools/infra/checks.py).

data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "function" {
  for_each = local.functions

  name_prefix        = "${var.name}-${each.key}-"
  assume_role_policy = data.aws_iam_policy_document.assume.json
}

data "aws_iam_policy_document" "network_and_tracing" {
  # checkov:skip=CKV_AWS_111:Lambda creates and deletes the ENIs of VPC functions with the execution role, and X-Ray accepts segments only on "*"; neither action can be scoped to known ARNs.
  # checkov:skip=CKV_AWS_356:Same statement: these actions have no resource ARN known in advance.
  statement {
    sid = "VpcNetworkInterfacesAndTracing"
    actions = [
      "ec2:CreateNetworkInterface",
      "ec2:DescribeNetworkInterfaces",
      "ec2:DescribeSubnets",
      "ec2:DeleteNetworkInterface",
      "ec2:AssignPrivateIpAddresses",
      "ec2:UnassignPrivateIpAddresses",
      "xray:PutTraceSegments",
      "xray:PutTelemetryRecords",
    ]
    resources = ["*"]
  }
}

resource "aws_iam_policy" "network_and_tracing" {
  name_prefix = "${var.name}-network-and-tracing-"
  description = "TMS functions - VPC network interfaces and X-Ray tracing"
  policy      = data.aws_iam_policy_document.network_and_tracing.json
}

resource "aws_iam_role_policy_attachment" "network_and_tracing" {
  for_each = aws_iam_role.function

  role       = each.value.name
  policy_arn = aws_iam_policy.network_and_tracing.arn
}

# The two work queues: every function that sends work messages sends to both (a task's messages
# travel on the queue of its priority), and the worker consumes both.
locals {
  work_queues = [var.work_queue_arn, var.high_work_queue_arn]
}

data "aws_iam_policy_document" "api" {
  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.function["api"].arn}:*"]
  }
  statement {
    sid       = "SendWork"
    actions   = ["sqs:SendMessage"]
    resources = local.work_queues
  }
  statement {
    sid       = "ReadWorkQueueDepth"
    actions   = ["sqs:GetQueueAttributes"]
    resources = local.work_queues
  }
  statement {
    sid       = "PresignImportUploads"
    actions   = ["s3:PutObject"]
    resources = ["${var.bucket_arn}/imports/*"]
  }
  statement {
    sid       = "PresignReportLinks"
    actions   = ["s3:GetObject"]
    resources = ["${var.bucket_arn}/reports/*"]
  }
  statement {
    sid       = "ReadApiTokens"
    actions   = ["ssm:GetParameter"]
    resources = ["${local.ssm_arn_prefix}${var.tokens_parameter_name}"]
  }
  statement {
    sid       = "ReadAppPasswordParameter"
    actions   = ["ssm:GetParameter"]
    resources = ["${local.ssm_arn_prefix}${local.app_password}"]
  }
  statement {
    sid       = "ReadAppPasswordSecret"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [var.database.app_secret_arn]
  }
  statement {
    sid       = "PublishLifecycleEvents"
    actions   = ["events:PutEvents"]
    resources = [var.event_bus_arn]
  }
}

data "aws_iam_policy_document" "worker" {
  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.function["worker"].arn}:*"]
  }
  statement {
    sid       = "ConsumeWork"
    actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"]
    resources = local.work_queues
  }
  # Malformed messages of either work queue go to the work DLQ.
  statement {
    sid       = "RetryAndDeadLetter"
    actions   = ["sqs:SendMessage"]
    resources = [var.work_queue_arn, var.high_work_queue_arn, var.work_dlq_arn]
  }
  statement {
    sid       = "StoreEmailsAndArchives"
    actions   = ["s3:PutObject"]
    resources = ["${var.bucket_arn}/emails/*", "${var.bucket_arn}/archive/*"]
  }
  statement {
    sid       = "ReadQueueProducers"
    actions   = ["ssm:GetParameter"]
    resources = ["${local.ssm_arn_prefix}${var.producers_parameter_name}"]
  }
  statement {
    sid       = "ReadAppPasswordParameter"
    actions   = ["ssm:GetParameter"]
    resources = ["${local.ssm_arn_prefix}${local.app_password}"]
  }
  statement {
    sid       = "ReadAppPasswordSecret"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [var.database.app_secret_arn]
  }
  statement {
    sid       = "PublishLifecycleEvents"
    actions   = ["events:PutEvents"]
    resources = [var.event_bus_arn]
  }
  # Only with a sending identity, and only as that identity.
  dynamic "statement" {
    for_each = var.email_identity == "" ? [] : [var.email_identity]
    content {
      sid       = "SendEmail"
      actions   = ["ses:SendEmail"]
      resources = ["arn:${data.aws_partition.current.partition}:ses:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:identity/${var.email_identity}"]
    }
  }
}

data "aws_iam_policy_document" "importer" {
  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.function["importer"].arn}:*"]
  }
  statement {
    sid       = "ConsumeImports"
    actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"]
    resources = [var.import_queue_arn]
  }
  statement {
    sid       = "SendWork"
    actions   = ["sqs:SendMessage"]
    resources = local.work_queues
  }
  statement {
    sid       = "ReadImports"
    actions   = ["s3:GetObject", "s3:GetObjectVersion"]
    resources = ["${var.bucket_arn}/imports/*"]
  }
  statement {
    sid       = "WriteReports"
    actions   = ["s3:PutObject"]
    resources = ["${var.bucket_arn}/reports/*"]
  }
  statement {
    sid       = "ReadAppPasswordParameter"
    actions   = ["ssm:GetParameter"]
    resources = ["${local.ssm_arn_prefix}${local.app_password}"]
  }
  statement {
    sid       = "ReadAppPasswordSecret"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [var.database.app_secret_arn]
  }
  statement {
    sid       = "PublishLifecycleEvents"
    actions   = ["events:PutEvents"]
    resources = [var.event_bus_arn]
  }
}

data "aws_iam_policy_document" "scheduler" {
  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.function["scheduler"].arn}:*"]
  }
  statement {
    sid       = "RelayWork"
    actions   = ["sqs:SendMessage"]
    resources = local.work_queues
  }
  statement {
    sid       = "ReadAppPasswordParameter"
    actions   = ["ssm:GetParameter"]
    resources = ["${local.ssm_arn_prefix}${local.app_password}"]
  }
  statement {
    sid       = "ReadAppPasswordSecret"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [var.database.app_secret_arn]
  }
  statement {
    sid       = "PublishLifecycleEvents"
    actions   = ["events:PutEvents"]
    resources = [var.event_bus_arn]
  }
}

data "aws_iam_policy_document" "bootstrap" {
  # checkov:skip=CKV_AWS_356:Only secretsmanager:GetRandomPassword has "*": it acts on no resource, and AWS documents it with "*".
  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.function["bootstrap"].arn}:*"]
  }
  statement {
    sid     = "ReadCredentialParameters"
    actions = ["ssm:GetParameter"]
    resources = [
      for user in ["admin", "migrator", "app", "dev"] : "${local.ssm_arn_prefix}${local.secret_reference[user]}"
    ]
  }
  statement {
    sid     = "ReadCredentialSecrets"
    actions = ["secretsmanager:GetSecretValue"]
    resources = [
      var.database.admin_secret_arn,
      var.database.migrator_secret_arn,
      var.database.app_secret_arn,
      var.database.dev_secret_arn,
    ]
  }
  statement {
    sid = "RotateLoginSecrets"
    actions = [
      "secretsmanager:DescribeSecret",
      "secretsmanager:GetSecretValue",
      "secretsmanager:PutSecretValue",
      "secretsmanager:UpdateSecretVersionStage",
    ]
    resources = [
      var.database.migrator_secret_arn,
      var.database.app_secret_arn,
      var.database.dev_secret_arn,
    ]
  }
  statement {
    sid       = "GeneratePasswords"
    actions   = ["secretsmanager:GetRandomPassword"]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "function" {
  for_each = {
    api       = data.aws_iam_policy_document.api.json
    worker    = data.aws_iam_policy_document.worker.json
    importer  = data.aws_iam_policy_document.importer.json
    scheduler = data.aws_iam_policy_document.scheduler.json
    bootstrap = data.aws_iam_policy_document.bootstrap.json
  }

  name   = "runtime"
  role   = aws_iam_role.function[each.key].id
  policy = each.value
}
