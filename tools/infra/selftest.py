#!/usr/bin/env python3
"""Self-test of check.py: copies template.yaml and terraform/ into a temporary directory,
breaks one property at a time, and asserts that the checks then fail naming that property
(and pass on the unbroken copy).

    selftest.py [--root DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import check  # noqa: E402

SAM = "template.yaml"
QUEUES = "terraform/modules/queues/main.tf"
FUNCTIONS = "terraform/modules/functions/main.tf"
IAM = "terraform/modules/functions/iam.tf"
STORAGE = "terraform/modules/storage/main.tf"
MONITORING = "terraform/modules/monitoring/main.tf"
API = "terraform/modules/api/main.tf"
DATABASE = "terraform/modules/database/main.tf"
DEPLOY = "terraform/modules/functions/deploy.tf"
NETWORK = "terraform/modules/network/main.tf"
NETWORK_VERSIONS = "terraform/modules/network/versions.tf"
CICD = "terraform/modules/cicd/main.tf"
VARIABLES = "terraform/variables.tf"
OUTPUTS = "terraform/outputs.tf"
EVENTS = "terraform/modules/events/main.tf"

# (what is broken, file, exact text (must occur once), replacement, property expected to fail)
MUTATIONS = [
    ("SAM work queue visibility 300 s < 6 x 60 + 1", SAM,
     "VisibilityTimeout: 370\n      MessageRetentionPeriod: 345600\n      SqsManagedSseEnabled: true\n      RedrivePolicy:\n        deadLetterTargetArn: !GetAtt WorkDeadLetterQueue.Arn",
     "VisibilityTimeout: 300\n      MessageRetentionPeriod: 345600\n      SqsManagedSseEnabled: true\n      RedrivePolicy:\n        deadLetterTargetArn: !GetAtt WorkDeadLetterQueue.Arn", "visibility"),
    ("SAM work queue maxReceiveCount 4", SAM,
     "deadLetterTargetArn: !GetAtt WorkDeadLetterQueue.Arn\n        maxReceiveCount: 5",
     "deadLetterTargetArn: !GetAtt WorkDeadLetterQueue.Arn\n        maxReceiveCount: 4", "max-receive-count"),
    ("SAM work DLQ retention = source retention", SAM,
     "  WorkDeadLetterQueue:\n    Type: AWS::SQS::Queue\n    Metadata:\n      checkov:\n        skip: *sse-sqs-skip\n"
     "    Properties:\n      MessageRetentionPeriod: 1209600",
     "  WorkDeadLetterQueue:\n    Type: AWS::SQS::Queue\n    Metadata:\n      checkov:\n        skip: *sse-sqs-skip\n"
     "    Properties:\n      MessageRetentionPeriod: 345600", "dlq-retention"),
    ("SAM worker mapping without ReportBatchItemFailures", SAM,
     "Queue: !GetAtt WorkQueue.Arn\n            BatchSize: 10\n            MaximumBatchingWindowInSeconds: 1\n            FunctionResponseTypes:\n              - ReportBatchItemFailures\n",
     "Queue: !GetAtt WorkQueue.Arn\n            BatchSize: 10\n            MaximumBatchingWindowInSeconds: 1\n", "report-batch-item-failures"),
    ("SAM bucket policy without the aws:SecureTransport deny", SAM,
     '- !Sub ${DataBucket.Arn}/*\n            Condition:\n              Bool:\n                aws:SecureTransport: "false"',
     '- !Sub ${DataBucket.Arn}/*\n            Condition:\n              Bool:\n                aws:ViaAWSService: "false"', "tls-only-bucket-policy"),
    ("SAM worker sqs:SendMessage on Resource \"*\"", SAM,
     "Resource: [!GetAtt WorkQueue.Arn, !GetAtt HighWorkQueue.Arn, !GetAtt WorkDeadLetterQueue.Arn]", 'Resource: "*"', "no-star-resource"),
    ("Terraform import queue visibility 3600 s < 6 x 900", QUEUES,
     "visibility_timeout_seconds = 5400", "visibility_timeout_seconds = 3600", "visibility"),
    ("Terraform import queue maxReceiveCount 4", QUEUES,
     "deadLetterTargetArn = aws_sqs_queue.import_dlq.arn\n    maxReceiveCount     = 5",
     "deadLetterTargetArn = aws_sqs_queue.import_dlq.arn\n    maxReceiveCount     = 4", "max-receive-count"),
    ("Terraform work DLQ retention = source retention", QUEUES,
     'name                      = "${var.name}-work-dlq"\n  message_retention_seconds = 1209600',
     'name                      = "${var.name}-work-dlq"\n  message_retention_seconds = 345600', "dlq-retention"),
    ("Terraform importer mapping without ReportBatchItemFailures", FUNCTIONS,
     'maximum_batching_window_in_seconds = 0\n  function_response_types            = ["ReportBatchItemFailures"]\n',
     "maximum_batching_window_in_seconds = 0\n", "report-batch-item-failures"),
    ("Terraform bucket policy without the aws:SecureTransport deny", STORAGE,
     'actions   = ["s3:*"]\n    resources = [aws_s3_bucket.data.arn, "${aws_s3_bucket.data.arn}/*"]\n\n    principals {\n      type        = "*"\n'
     '      identifiers = ["*"]\n    }\n\n    condition {\n      test     = "Bool"\n      variable = "aws:SecureTransport"',
     'actions   = ["s3:*"]\n    resources = [aws_s3_bucket.data.arn, "${aws_s3_bucket.data.arn}/*"]\n\n    principals {\n      type        = "*"\n'
     '      identifiers = ["*"]\n    }\n\n    condition {\n      test     = "Bool"\n      variable = "aws:ViaAWSService"', "tls-only-bucket-policy"),
    ("Terraform importer s3:GetObject on resources [\"*\"]", IAM,
     'actions   = ["s3:GetObject", "s3:GetObjectVersion"]\n    resources = ["${var.bucket_arn}/imports/*"]',
     'actions   = ["s3:GetObject", "s3:GetObjectVersion"]\n    resources = ["*"]', "no-star-resource"),
    ("SAM import DLQ without SSE", SAM,
     "  ImportDeadLetterQueue:\n    Type: AWS::SQS::Queue\n    Metadata:\n      checkov:\n        skip: *sse-sqs-skip\n"
     "    Properties:\n      MessageRetentionPeriod: 1209600\n      SqsManagedSseEnabled: true",
     "  ImportDeadLetterQueue:\n    Type: AWS::SQS::Queue\n    Metadata:\n      checkov:\n        skip: *sse-sqs-skip\n"
     "    Properties:\n      MessageRetentionPeriod: 1209600\n      SqsManagedSseEnabled: false", "queue-sse"),
    ("parity: Terraform worker memory 640 MB", FUNCTIONS,
     "      memory            = 512", "      memory            = 640", "parity"),
    ("parity: Terraform scheduler timeout 90 s", FUNCTIONS,
     "      timeout           = 120", "      timeout           = 90", "parity"),
    ("parity: Terraform importer ephemeral storage 512 MB", FUNCTIONS,
     "      ephemeral_storage = 1024", "      ephemeral_storage = 512", "parity"),
    ("parity: Terraform worker without TMS_PRODUCERS_PARAM", FUNCTIONS,
     "        TMS_PRODUCERS_PARAM         = var.producers_parameter_name\n", "", "parity"),
    ("parity: Terraform worker env var renamed", FUNCTIONS,
     "TMS_WORK_DLQ_URL            = var.work_dlq_url", "TMS_WORK_DEAD_LETTER_URL    = var.work_dlq_url", "parity"),
    ("parity: Terraform worker mapping batch size 5", FUNCTIONS,
     'event_source_arn                   = var.work_queue_arn\n  function_name                      = aws_lambda_alias.live["worker"].arn\n  batch_size                         = 10',
     'event_source_arn                   = var.work_queue_arn\n  function_name                      = aws_lambda_alias.live["worker"].arn\n  batch_size                         = 5', "parity"),
    ("parity: SAM stats schedule every 10 minutes", SAM,
     "Schedule: rate(5 minutes)", "Schedule: rate(10 minutes)", "parity"),
    ("parity: Terraform work queue age alarm threshold 600", MONITORING,
     'target = "work", statistic = "Maximum", period = 300, evaluation_periods = 3, datapoints = 2, threshold = 300,',
     'target = "work", statistic = "Maximum", period = 300, evaluation_periods = 3, datapoints = 2, threshold = 600,', "parity"),
    ("parity: Terraform without the GET /docs route", API,
     '"GET /docs" ', '"GET /docz" ', "parity"),
    ("Terraform work queue without SSE", QUEUES,
     'name                       = "${var.name}-work"\n  visibility_timeout_seconds = 370\n  message_retention_seconds  = 345600\n'
     "  sqs_managed_sse_enabled    = true",
     'name                       = "${var.name}-work"\n  visibility_timeout_seconds = 370\n  message_retention_seconds  = 345600\n'
     "  sqs_managed_sse_enabled    = false", "queue-sse"),
    # Bounded connections: fixed pools, one connection for the API and the scheduler.
    ("SAM API pool of 4 connections", SAM,
     'TMS_DATABASE_PASSWORD_PARAM: &app-password-name !Sub /aws/reference/secretsmanager/${AppPasswordSecret}\n          TMS_DATABASE_POOL_SIZE: "1"',
     'TMS_DATABASE_PASSWORD_PARAM: &app-password-name !Sub /aws/reference/secretsmanager/${AppPasswordSecret}\n          TMS_DATABASE_POOL_SIZE: "4"', "bounded-connections"),
    ("Terraform scheduler without a pool size", FUNCTIONS,
     'TMS_DATABASE_POOL_SIZE      = "1"\n      }\n      reserved_concurrency = 0\n      deployment           = "AllAtOnce"',
     '}\n      reserved_concurrency = 0\n      deployment           = "AllAtOnce"', "bounded-connections"),
    ("parity: Terraform worker pool of 3 connections", FUNCTIONS,
     'TMS_DATABASE_URL            = local.proxied_database_url\n        TMS_DATABASE_SSLMODE        = "verify-full"\n        TMS_DATABASE_CA_FILE        = local.ca_file\n        TMS_DATABASE_PASSWORD_PARAM = local.app_password\n        TMS_DATABASE_POOL_SIZE      = "2"',
     'TMS_DATABASE_URL            = local.proxied_database_url\n        TMS_DATABASE_SSLMODE        = "verify-full"\n        TMS_DATABASE_CA_FILE        = local.ca_file\n        TMS_DATABASE_PASSWORD_PARAM = local.app_password\n        TMS_DATABASE_POOL_SIZE      = "3"', "parity"),
    ("parity: Terraform worker bypasses RDS Proxy", FUNCTIONS,
     'TMS_DATABASE_URL            = local.proxied_database_url\n        TMS_DATABASE_SSLMODE        = "verify-full"\n        TMS_DATABASE_CA_FILE        = local.ca_file\n        TMS_DATABASE_PASSWORD_PARAM = local.app_password\n        TMS_DATABASE_POOL_SIZE      = "2"',
     'TMS_DATABASE_URL            = local.direct_database_url\n        TMS_DATABASE_SSLMODE        = "verify-full"\n        TMS_DATABASE_CA_FILE        = local.ca_file\n        TMS_DATABASE_PASSWORD_PARAM = local.app_password\n        TMS_DATABASE_POOL_SIZE      = "2"', "parity"),
    ("parity: Terraform API without its reserved concurrency", FUNCTIONS,
     "reserved_concurrency = var.api_reserved_concurrency", "reserved_concurrency = 0", "parity"),
    ("parity: Terraform proxy opens 90% of the connections", DATABASE,
     "max_connections_percent      = 60", "max_connections_percent      = 90", "parity"),
    # Environment values and IAM statements.
    ("parity: SAM worker stores archives under another prefix", SAM,
     'Resource: [!Sub "${DataBucket.Arn}/emails/*", !Sub "${DataBucket.Arn}/archive/*"]',
     'Resource: [!Sub "${DataBucket.Arn}/emails/*", !Sub "${DataBucket.Arn}/archives/*"]', "parity"),
    ("parity: Terraform bootstrapper cannot put secret values", IAM,
     '      "secretsmanager:PutSecretValue",\n', "", "parity"),
    ("parity: Terraform deploy role trusts every ref of the repository", CICD,
     'values   = ["repo:${var.github_repository}:${var.github_deploy_subject}"]', 'values   = ["repo:${var.github_repository}:*"]', "parity"),
    # Alarms: actions, missing data, M of N, the heartbeat.
    ("SAM stats heartbeat treats missing data as fine", SAM,
     "TreatMissingData: breaching", "TreatMissingData: notBreaching", "stats-heartbeat"),
    ("Terraform alarms without OK actions", MONITORING,
     "  alarm_actions       = [aws_sns_topic.alarms.arn]\n  ok_actions          = [aws_sns_topic.alarms.arn]\n\n  dimensions = {\n    (each.value.dimension)",
     "  alarm_actions       = [aws_sns_topic.alarms.arn]\n\n  dimensions = {\n    (each.value.dimension)", "alarm-actions"),
    ("parity: Terraform dead-tasks alarm breaches on missing data", MONITORING,
     'missing = "notBreaching", database = false, description = "Dead tasks await',
     'missing = "breaching", database = false, description = "Dead tasks await', "parity"),
    ("parity: SAM import queue age alarm at 30 minutes", SAM,
     "Threshold: 3600", "Threshold: 1800", "parity"),
    ("parity: Terraform 5xx rate alarm on 1 datapoint of 5", MONITORING,
     "evaluation_periods  = 5\n  datapoints_to_alarm = 3\n  threshold           = 5",
     "evaluation_periods  = 5\n  datapoints_to_alarm = 1\n  threshold           = 5", "parity"),
    # Log retention.
    ("Terraform database log groups without retention", DATABASE,
     'name              = "/aws/rds/instance/${local.identifier}/${each.key}"\n  retention_in_days = var.log_retention_days',
     'name              = "/aws/rds/instance/${local.identifier}/${each.key}"', "log-retention"),
    ("parity: SAM upgrade log group kept 7 days", SAM,
     "        - /aws/rds/instance/tms-${StackKey}/upgrade\n        - StackKey: !Select [0, !Split [\"-\", !Select [2, !Split [\"/\", !Ref AWS::StackId]]]]\n      RetentionInDays: !Ref LogRetentionDays",
     "        - /aws/rds/instance/tms-${StackKey}/upgrade\n        - StackKey: !Select [0, !Split [\"-\", !Select [2, !Split [\"/\", !Ref AWS::StackId]]]]\n      RetentionInDays: 7", "parity"),
    # The dashboard.
    ("parity: Terraform dashboard shows the API's p90 duration", MONITORING,
     '["AWS/Lambda", "Duration", "FunctionName", var.function_names["api"], { stat = "p99" }],',
     '["AWS/Lambda", "Duration", "FunctionName", var.function_names["api"], { stat = "p90" }],', "parity"),
    # Safe deployments.
    ("Terraform worker mapping invokes the function, not its alias", FUNCTIONS,
     'event_source_arn                   = var.work_queue_arn\n  function_name                      = aws_lambda_alias.live["worker"].arn',
     'event_source_arn                   = var.work_queue_arn\n  function_name                      = aws_lambda_function.this["worker"].arn', "invoked-through-alias"),
    ("SAM API integration invokes the function, not its alias", SAM,
     "IntegrationUri: !Ref ApiFunction.Alias", "IntegrationUri: !GetAtt ApiFunction.Arn", "invoked-through-alias"),
    ("SAM worker deployed without rollback alarms", SAM,
     "        Alarms: [!Ref WorkerErrorsAlarm]\n", "", "rollback-alarms"),
    ("parity: Terraform scheduler deployed gradually", FUNCTIONS,
     'deployment           = "AllAtOnce"', "deployment           = var.deployment_strategy", "parity"),
    ("Terraform aliases of three functions only", DEPLOY,
     "resource \"aws_lambda_alias\" \"live\" {\n  for_each = local.app_functions",
     "resource \"aws_lambda_alias\" \"live\" {\n  for_each = { for k, v in local.app_functions : k => v if k != \"scheduler\" }", "invoked-through-alias"),
    # Rotation.
    ("Terraform dev login not rotated", FUNCTIONS,
     "    app      = var.database.app_secret_arn\n    dev      = var.database.dev_secret_arn\n  }\n\n  functions",
     "    app      = var.database.app_secret_arn\n  }\n\n  functions", "login-rotation"),
    ("parity: SAM dev login rotated weekly", SAM,
     "SecretId: !Ref DevPasswordSecret\n      RotationLambdaARN: !GetAtt BootstrapFunction.Arn\n      RotateImmediatelyOnUpdate: false\n      RotationRules:\n        AutomaticallyAfterDays: !Ref LoginRotationDays",
     "SecretId: !Ref DevPasswordSecret\n      RotationLambdaARN: !GetAtt BootstrapFunction.Arn\n      RotateImmediatelyOnUpdate: false\n      RotationRules:\n        AutomaticallyAfterDays: 7", "parity"),
    # RDS and the network.
    ("parity: SAM without Performance Insights", SAM,
     "EnablePerformanceInsights: true", "EnablePerformanceInsights: false", "parity"),
    ("parity: Terraform without log_min_duration_statement", DATABASE,
     '  parameter {\n    name  = "log_min_duration_statement"\n    value = tostring(var.slow_statement_ms)\n  }\n', "", "parity"),
    ("parity: Terraform without the NAT-per-zone option", NETWORK,
     "  count = local.nat_count\n\n  allocation_id", "  count = 1\n\n  allocation_id", "parity"),
    # Terraform: providers, variable validation.
    ("Terraform network module without a provider version", NETWORK_VERSIONS,
     '      source  = "hashicorp/aws"\n      version = ">= 5.80, < 6.0"', '      source = "hashicorp/aws"', "provider-versions"),
    ("parity: Terraform task retention accepts 0 days", VARIABLES,
     "condition     = var.task_retention_days >= 1", "condition     = var.task_retention_days >= 0", "parity"),
    ("parity: SAM log retention without 3653 days", SAM,
     "3288, 3653]", "3288]", "parity"),
    ("parity: Terraform VPC CIDR without its pattern", VARIABLES,
     'condition     = can(regex("^\\\\d{1,3}\\\\.\\\\d{1,3}\\\\.\\\\d{1,3}\\\\.\\\\d{1,3}/16$", var.vpc_cidr))',
     "condition     = var.vpc_cidr != \"\"", "parity"),
    # The event bus: the rule's target, its dead-letter queue and retries, the queues' policies.
    ("Terraform events rule without its dead-letter queue", EVENTS,
     "  dead_letter_config {\n    arn = var.events_dlq_arn\n  }\n\n", "", "event-delivery"),
    ("SAM events rule delivering to the import queue", SAM,
     "        - Id: work\n          Arn: !GetAtt WorkQueue.Arn", "        - Id: work\n          Arn: !GetAtt ImportQueue.Arn", "event-delivery"),
    ("SAM events rule without a retry policy", SAM,
     "          RetryPolicy:\n            MaximumRetryAttempts: 185\n            MaximumEventAgeInSeconds: 86400\n", "", "event-delivery"),
    ("Terraform work queue lets EventBridge send from any rule", EVENTS,
     '      identifiers = ["events.amazonaws.com"]\n    }\n\n    condition {\n      test     = "ArnEquals"\n      variable = "aws:SourceArn"\n'
     '      values   = [aws_cloudwatch_event_rule.work.arn]\n    }\n  }\n\n  statement {\n    sid       = "DenyInsecureTransport"\n    effect    = "Deny"\n'
     '    actions   = ["sqs:*"]\n    resources = [var.work_queue_arn]',
     '      identifiers = ["events.amazonaws.com"]\n    }\n  }\n\n  statement {\n    sid       = "DenyInsecureTransport"\n    effect    = "Deny"\n'
     '    actions   = ["sqs:*"]\n    resources = [var.work_queue_arn]', "event-delivery"),
    ("SAM work queue lets EventBridge send from the whole bus", SAM,
     "                aws:SourceArn: !GetAtt EventsRule.Arn\n          - Sid: DenyInsecureTransport\n            Effect: Deny\n"
     '            Principal: "*"\n            Action: sqs:*\n            Resource: !GetAtt WorkQueue.Arn',
     "                aws:SourceArn: !GetAtt EventBus.Arn\n          - Sid: DenyInsecureTransport\n            Effect: Deny\n"
     '            Principal: "*"\n            Action: sqs:*\n            Resource: !GetAtt WorkQueue.Arn', "event-delivery"),
    ("SAM events DLQ policy lets another service send", SAM,
     "          - Sid: EventsRuleDeadLetters\n            Effect: Allow\n            Principal: {Service: events.amazonaws.com}",
     "          - Sid: EventsRuleDeadLetters\n            Effect: Allow\n            Principal: {Service: sns.amazonaws.com}", "event-delivery"),
    ("Terraform events DLQ kept 4 days", QUEUES,
     'name                      = "${var.name}-events-dlq"\n  message_retention_seconds = 1209600',
     'name                      = "${var.name}-events-dlq"\n  message_retention_seconds = 345600', "event-delivery"),
    ("Terraform work queue policy without the TLS-only deny", EVENTS,
     'resources = [var.work_queue_arn]\n\n    principals {\n      type        = "*"\n      identifiers = ["*"]\n    }\n\n'
     '    condition {\n      test     = "Bool"\n      variable = "aws:SecureTransport"',
     'resources = [var.work_queue_arn]\n\n    principals {\n      type        = "*"\n      identifiers = ["*"]\n    }\n\n'
     '    condition {\n      test     = "Bool"\n      variable = "aws:ViaAWSService"', "tls-only-queue-policy"),
    ("SAM import queue policy without the TLS-only deny", SAM,
     'Resource: !GetAtt ImportQueue.Arn\n            Condition:\n              Bool:\n                aws:SecureTransport: "false"',
     'Resource: !GetAtt ImportQueue.Arn\n            Condition:\n              Bool:\n                aws:ViaAWSService: "false"', "tls-only-queue-policy"),
    ("parity: Terraform events retried for an hour only", EVENTS,
     "maximum_event_age_in_seconds = 86400", "maximum_event_age_in_seconds = 3600", "parity"),
    ("parity: Terraform rule takes only the events of source tms", EVENTS,
     'event_pattern  = jsonencode({ source = [{ prefix = "" }] })', 'event_pattern  = jsonencode({ source = ["tms"] })', "parity"),
    ("parity: Terraform events DLQ policy's TLS-only deny under another Sid", EVENTS,
     '    sid       = "DenyInsecureTransport"\n    effect    = "Deny"\n    actions   = ["sqs:*"]\n    resources = [var.events_dlq_arn]',
     '    sid       = "DenyPlainHttp"\n    effect    = "Deny"\n    actions   = ["sqs:*"]\n    resources = [var.events_dlq_arn]', "parity"),
    ("parity: Terraform without the event bus ARN output", OUTPUTS,
     'output "event_bus_arn" {\n  value = module.events.bus_arn\n}\n\n', "", "parity"),
    # Alarms and the dashboard of the event bus.
    ("SAM events DLQ without its depth alarm", SAM,
     "Dimensions: [{Name: QueueName, Value: !GetAtt EventsDeadLetterQueue.QueueName}]",
     "Dimensions: [{Name: QueueName, Value: !GetAtt WorkDeadLetterQueue.QueueName}]", "dlq-alarm"),
    ("parity: Terraform undelivered-events alarm on FailedInvocations", MONITORING,
     'metric_name         = "InvocationsFailedToBeSentToDLQ"', 'metric_name         = "FailedInvocations"', "parity"),
    ("parity: SAM undelivered-events alarm on the rule's Ref (bus|rule, not its name)", SAM,
     '- {Name: RuleName, Value: !Sub "${AWS::StackName}-events-to-work"}', "- {Name: RuleName, Value: !Ref EventsRule}", "parity"),
    ("parity: Terraform dashboard without the events rule's failures", MONITORING,
     '        ["AWS/Events", "FailedInvocations", "EventBusName", var.event_bus_name, "RuleName", var.event_rule_name, { stat = "Sum" }],\n',
     "", "parity"),
    # Lifecycle events on the bus, email through SES.
    ("SAM scheduler does not name the event bus", SAM,
     '          TMS_DATABASE_POOL_SIZE: "1"\n          TMS_EVENT_BUS: *event-bus\n', '          TMS_DATABASE_POOL_SIZE: "1"\n', "event-publishing"),
    ("Terraform worker may put events on every bus", IAM,
     '    resources = [var.event_bus_arn]\n  }\n  # Only with a sending identity', '    resources = ["arn:aws:events:*:*:event-bus/*"]\n  }\n  # Only with a sending identity',
     "event-publishing"),
    ("SAM bootstrapper may put events", SAM,
     '              - Sid: GeneratePasswords\n                Effect: Allow\n                Action: secretsmanager:GetRandomPassword\n                Resource: "*"\n',
     '              - Sid: GeneratePasswords\n                Effect: Allow\n                Action: secretsmanager:GetRandomPassword\n                Resource: "*"\n'
     '              - *publish-lifecycle-events\n', "event-publishing"),
    ("SAM worker may send as any identity", SAM,
     "Resource: !Sub arn:${AWS::Partition}:ses:${AWS::Region}:${AWS::AccountId}:identity/${EmailIdentity}",
     "Resource: !Sub arn:${AWS::Partition}:ses:${AWS::Region}:${AWS::AccountId}:identity/*", "email-sending"),
    ("Terraform worker may send email without an identity", IAM,
     '  dynamic "statement" {\n    for_each = var.email_identity == "" ? [] : [var.email_identity]\n    content {',
     '  dynamic "statement" {\n    for_each = [var.email_identity]\n    content {', "email-sending"),
    ("Terraform worker without TMS_EMAIL_DELIVER", FUNCTIONS,
     "        TMS_EMAIL_DELIVER           = tostring(var.email_deliver_default)\n", "", "email-sending"),
    ("parity: SAM email delivered by default", SAM,
     "          TMS_EMAIL_DELIVER: !Ref EmailDeliverDefault", '          TMS_EMAIL_DELIVER: "true"', "parity"),
    # The high-priority work queue: beside the work queue, mapped, alarmed, named and granted alike.
    ("Terraform without the high-priority queue's mapping", FUNCTIONS,
     'resource "aws_lambda_event_source_mapping" "worker_high" {\n  event_source_arn                   = var.high_work_queue_arn\n'
     '  function_name                      = aws_lambda_alias.live["worker"].arn\n  batch_size                         = 10\n'
     '  maximum_batching_window_in_seconds = 1\n  function_response_types            = ["ReportBatchItemFailures"]\n\n'
     '  scaling_config {\n    maximum_concurrency = 10\n  }\n}\n', "", "priority-queue"),
    ("SAM without the high-priority queue's mapping", SAM,
     "        HighWorkQueue:\n          Type: SQS\n          Properties:\n            Queue: !GetAtt HighWorkQueue.Arn\n"
     "            BatchSize: 10\n            MaximumBatchingWindowInSeconds: 1\n            FunctionResponseTypes:\n"
     "              - ReportBatchItemFailures\n            ScalingConfig:\n              MaximumConcurrency: 10\n", "", "priority-queue"),
    ("parity: SAM without the high-priority queue's mapping", SAM,
     "        HighWorkQueue:\n          Type: SQS\n          Properties:\n            Queue: !GetAtt HighWorkQueue.Arn\n"
     "            BatchSize: 10\n            MaximumBatchingWindowInSeconds: 1\n            FunctionResponseTypes:\n"
     "              - ReportBatchItemFailures\n            ScalingConfig:\n              MaximumConcurrency: 10\n", "", "parity"),
    ("Terraform high-priority mapping at twice the work queue's concurrency", FUNCTIONS,
     '  event_source_arn                   = var.high_work_queue_arn\n  function_name                      = aws_lambda_alias.live["worker"].arn\n'
     '  batch_size                         = 10\n  maximum_batching_window_in_seconds = 1\n  function_response_types            = ["ReportBatchItemFailures"]\n\n'
     '  scaling_config {\n    maximum_concurrency = 10',
     '  event_source_arn                   = var.high_work_queue_arn\n  function_name                      = aws_lambda_alias.live["worker"].arn\n'
     '  batch_size                         = 10\n  maximum_batching_window_in_seconds = 1\n  function_response_types            = ["ReportBatchItemFailures"]\n\n'
     '  scaling_config {\n    maximum_concurrency = 20', "priority-queue"),
    ("SAM high-priority queue dead-letters to the work DLQ", SAM,
     "deadLetterTargetArn: !GetAtt HighWorkDeadLetterQueue.Arn", "deadLetterTargetArn: !GetAtt WorkDeadLetterQueue.Arn", "priority-queue"),
    ("Terraform without the high-priority queue's age alarm", MONITORING,
     'metric = "ApproximateAgeOfOldestMessage", dimension = "QueueName", target = "high_work"',
     'metric = "NumberOfMessagesSent", dimension = "QueueName", target = "high_work"', "priority-queue"),
    ("SAM scheduler without TMS_HIGH_WORK_QUEUE_URL", SAM,
     "          TMS_HIGH_WORK_QUEUE_URL: *high-work-queue\n          TMS_RETENTION_DAYS", "          TMS_RETENTION_DAYS", "priority-queue"),
    ("Terraform importer cannot send to the high-priority queue", IAM,
     '    sid       = "SendWork"\n    actions   = ["sqs:SendMessage"]\n    resources = local.work_queues\n  }\n  statement {\n    sid       = "ReadImports"',
     '    sid       = "SendWork"\n    actions   = ["sqs:SendMessage"]\n    resources = [var.work_queue_arn]\n  }\n  statement {\n    sid       = "ReadImports"', "priority-queue"),
    ("Terraform high-priority queue kept 1 day", QUEUES,
     'name                       = "${var.name}-work-high"\n  visibility_timeout_seconds = 370\n  message_retention_seconds  = 345600',
     'name                       = "${var.name}-work-high"\n  visibility_timeout_seconds = 370\n  message_retention_seconds  = 86400', "priority-queue"),
    ("parity: Terraform high-priority queue age alarm threshold 600", MONITORING,
     'target = "high_work", statistic = "Maximum", period = 300, evaluation_periods = 3, datapoints = 2, threshold = 300,',
     'target = "high_work", statistic = "Maximum", period = 300, evaluation_periods = 3, datapoints = 2, threshold = 600,', "parity"),
    ("parity: Terraform without the high-priority queue's URL output", OUTPUTS,
     'output "high_work_queue_url" {', 'output "high_work_queue_address" {', "parity"),
    # The scheduler's jobs.
    ("Terraform without the schedules job", FUNCTIONS,
     '    schedules = { expression = "rate(1 minute)", input = { job = "schedules" } }\n', "", "scheduler-jobs"),
    ("parity: SAM schedules job every 5 minutes", SAM,
     "Schedule: rate(1 minute)\n            Input: '{\"job\":\"schedules\"}'", "Schedule: rate(5 minutes)\n            Input: '{\"job\":\"schedules\"}'", "parity"),
]


# cfn-lint from 1.54 on no longer runs the SAM translator: an unknown SQS event property passes.
SAM_ERROR = """\
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Resources:
  Queue:
    Type: AWS::SQS::Queue
  Function:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: .
      Handler: bootstrap
      Runtime: provided.al2023
      Events:
        Work:
          Type: SQS
          Properties:
            Queue: !GetAtt Queue.Arn
            MaximumConcurency: 10
"""


def _cfn_lint_sees_sam_errors(scratch: str) -> bool:
    path = os.path.join(scratch, "sam-error.yaml")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(SAM_ERROR)
    cfn_lint = os.path.join(os.path.dirname(sys.executable), "cfn-lint")
    result = subprocess.run([cfn_lint, path], capture_output=True, text=True, check=False)
    return result.returncode & 2 == 2 and "MaximumConcurency" in result.stdout


def _copy(root: str, into: str) -> None:
    shutil.copy(os.path.join(root, SAM), os.path.join(into, SAM))
    shutil.copytree(
        os.path.join(root, "terraform"),
        os.path.join(into, "terraform"),
        ignore=shutil.ignore_patterns(".terraform", "*.tfstate*", ".terraform.lock.hcl"),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_root = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    parser.add_argument("--root", default=default_root)
    args = parser.parse_args()

    errors = []
    with tempfile.TemporaryDirectory(prefix="tms-infra-selftest-") as scratch:
        pristine = os.path.join(scratch, "pristine")
        os.mkdir(pristine)
        _copy(args.root, pristine)
        if _cfn_lint_sees_sam_errors(scratch):
            print("ok    cfn-lint rejects a SAM event with an unknown property (SAM translator active)")
        else:
            errors.append("cfn-lint accepted a SAM event with an unknown property: keep cfn-lint at a version that runs the SAM translator (1.53.0)")
        failures = check.run(pristine)
        if failures:
            errors.append(f"the unbroken copy fails: {failures[0][1]}")
        else:
            print("ok    unbroken copy passes")

        for index, (what, relpath, old, new, expected) in enumerate(MUTATIONS):
            case = os.path.join(scratch, f"case{index}")
            os.mkdir(case)
            _copy(args.root, case)
            path = os.path.join(case, relpath)
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
            if text.count(old) != 1:
                errors.append(f"{what}: the text to break occurs {text.count(old)} times in {relpath} (update MUTATIONS)")
                continue
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(text.replace(old, new))
            failures = check.run(case)
            named = [message for prop, message in failures if prop == expected]
            if named:
                print(f"ok    {what}: FAIL [{expected}] {named[0]}")
            else:
                got = ", ".join(sorted({prop for prop, _ in failures})) or "nothing"
                errors.append(f"{what}: expected a [{expected}] failure, got {got}")

    for error in errors:
        print(f"ERROR {error}")
    if errors:
        return 1
    print(f"infra self-test OK: {len(MUTATIONS)} broken copies rejected with the property they break")
    return 0


if __name__ == "__main__":
    sys.exit(main())
