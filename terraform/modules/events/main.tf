# The event bus (SPEC 3, event triggers); the same resources and settings as template.yaml.
# Producers put events on it; one rule delivers every event to the work queue, where the worker
# matches them against the tenants' triggers and creates their tasks (for the tenants the producer
# map lets the event's account create tasks for). The pattern takes every event: which sources
# matter is data (the triggers), not infrastructure, and an event no trigger takes is acknowledged
# and counted (EventsUnmatched). EventBridge retries a failed delivery for up to 24 hours (its
# maximum: an event undelivered is a task never created; the triggers' idempotency on the event id
# makes a late or repeated one harmless), then, or at once for errors retrying cannot fix (a
# missing permission, a deleted queue), moves it to the events DLQ with the error in its
# attributes.

resource "aws_cloudwatch_event_bus" "this" {
  name = "${var.name}-events"
}

resource "aws_cloudwatch_event_rule" "work" {
  name           = "${var.name}-events-to-work"
  description    = "Every event on the bus to the work queue (the worker matches the tenants' triggers)"
  event_bus_name = aws_cloudwatch_event_bus.this.name
  event_pattern  = jsonencode({ source = [{ prefix = "" }] })
  state          = "ENABLED"
}

resource "aws_cloudwatch_event_target" "work" {
  rule           = aws_cloudwatch_event_rule.work.name
  event_bus_name = aws_cloudwatch_event_bus.this.name
  target_id      = "work"
  arn            = var.work_queue_arn

  dead_letter_config {
    arn = var.events_dlq_arn
  }

  retry_policy {
    maximum_retry_attempts       = 185
    maximum_event_age_in_seconds = 86400
  }

  # The queues let EventBridge send before the first event is delivered to them.
  depends_on = [aws_sqs_queue_policy.work, aws_sqs_queue_policy.events_dlq]
}

# The work queue's own senders (functions of this stack) are allowed by their roles; this policy
# adds EventBridge, for the rule above only.
data "aws_iam_policy_document" "work_queue" {
  statement {
    sid       = "EventsRule"
    actions   = ["sqs:SendMessage"]
    resources = [var.work_queue_arn]

    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }

    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [aws_cloudwatch_event_rule.work.arn]
    }
  }

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["sqs:*"]
    resources = [var.work_queue_arn]

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

resource "aws_sqs_queue_policy" "work" {
  queue_url = var.work_queue_url
  policy    = data.aws_iam_policy_document.work_queue.json
}

data "aws_iam_policy_document" "events_dlq" {
  statement {
    sid       = "EventsRuleDeadLetters"
    actions   = ["sqs:SendMessage"]
    resources = [var.events_dlq_arn]

    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }

    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [aws_cloudwatch_event_rule.work.arn]
    }
  }

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["sqs:*"]
    resources = [var.events_dlq_arn]

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

resource "aws_sqs_queue_policy" "events_dlq" {
  queue_url = var.events_dlq_url
  policy    = data.aws_iam_policy_document.events_dlq.json
}
