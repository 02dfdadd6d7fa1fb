variable "bucket_name" {
  type = string
}

variable "import_queue_arn" {
  type = string
}

variable "import_queue_url" {
  type = string
}
