# Visibility timeout >= 6 x consumer timeout + batching window (AWS's guidance for event source
# mappings): work and work-high 6 x 60 + 1 = 361 -> 370 s; import 6 x 900 + 0 = 5400 s. Sources
# keep 4 days, DLQs 14 days, so a message always outlives its source's retention. Same values as
# template.yaml.
# The events DLQ holds what EventBridge could not deliver to the work queue (modules/events).

resource "aws_sqs_queue" "work" {
  name                       = "${var.name}-work"
  visibility_timeout_seconds = 370
  message_retention_seconds  = 345600
  sqs_managed_sse_enabled    = true
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.work_dlq.arn
    maxReceiveCount     = 5
  })
}

resource "aws_sqs_queue" "work_dlq" {
  name                      = "${var.name}-work-dlq"
  message_retention_seconds = 1209600
  sqs_managed_sse_enabled   = true
}

# The work queue of `high` tasks (SPEC 3, flow control): the work queue's settings, a DLQ of its
# own, and a mapping of its own to the worker (modules/functions), so that a backlog of `normal`
# tasks never stands in front of them.
resource "aws_sqs_queue" "high_work" {
  name                       = "${var.name}-work-high"
  visibility_timeout_seconds = 370
  message_retention_seconds  = 345600
  sqs_managed_sse_enabled    = true
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.high_work_dlq.arn
    maxReceiveCount     = 5
  })
}

resource "aws_sqs_queue" "high_work_dlq" {
  name                      = "${var.name}-work-high-dlq"
  message_retention_seconds = 1209600
  sqs_managed_sse_enabled   = true
}

# Its senders are the stack's functions (their roles allow them); the policy only refuses plain
# HTTP, like the work queue's (modules/events).
data "aws_iam_policy_document" "high_work" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["sqs:*"]
    resources = [aws_sqs_queue.high_work.arn]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_sqs_queue_policy" "high_work" {
  queue_url = aws_sqs_queue.high_work.url
  policy    = data.aws_iam_policy_document.high_work.json
}

resource "aws_sqs_queue" "import" {
  name                       = "${var.name}-import"
  visibility_timeout_seconds = 5400
  message_retention_seconds  = 345600
  sqs_managed_sse_enabled    = true
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.import_dlq.arn
    maxReceiveCount     = 5
  })
}

resource "aws_sqs_queue" "import_dlq" {
  name                      = "${var.name}-import-dlq"
  message_retention_seconds = 1209600
  sqs_managed_sse_enabled   = true
}

resource "aws_sqs_queue" "events_dlq" {
  name                      = "${var.name}-events-dlq"
  message_retention_seconds = 1209600
  sqs_managed_sse_enabled   = true
}
