output "work_queue_arn" {
  value = aws_sqs_queue.work.arn
}

output "work_queue_url" {
  value = aws_sqs_queue.work.url
}

output "work_dlq_arn" {
  value = aws_sqs_queue.work_dlq.arn
}

output "work_dlq_url" {
  value = aws_sqs_queue.work_dlq.url
}

output "high_work_queue_arn" {
  value = aws_sqs_queue.high_work.arn
}

output "high_work_queue_url" {
  value = aws_sqs_queue.high_work.url
}

output "high_work_dlq_url" {
  value = aws_sqs_queue.high_work_dlq.url
}

output "import_queue_arn" {
  value = aws_sqs_queue.import.arn
}

output "import_queue_url" {
  value = aws_sqs_queue.import.url
}

output "import_dlq_url" {
  value = aws_sqs_queue.import_dlq.url
}

output "events_dlq_arn" {
  value = aws_sqs_queue.events_dlq.arn
}

output "events_dlq_url" {
  value = aws_sqs_queue.events_dlq.url
}

# For the alarms' QueueName dimensions.
output "queue_names" {
  value = {
    work          = aws_sqs_queue.work.name
    work_dlq      = aws_sqs_queue.work_dlq.name
    high_work     = aws_sqs_queue.high_work.name
    high_work_dlq = aws_sqs_queue.high_work_dlq.name
    import        = aws_sqs_queue.import.name
    import_dlq    = aws_sqs_queue.import_dlq.name
    events_dlq    = aws_sqs_queue.events_dlq.name
  }
}
