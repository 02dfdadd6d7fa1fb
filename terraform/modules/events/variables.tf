variable "name" {
  type = string
}

variable "work_queue_arn" {
  type = string
}

variable "work_queue_url" {
  type = string
}

variable "events_dlq_arn" {
  type = string
}

variable "events_dlq_url" {
  type = string
}
