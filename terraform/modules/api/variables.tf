variable "name" {
  type = string
}

variable "function_name" {
  type = string
}

variable "function_alias_arn" {
  type = string
}

variable "function_alias" {
  type = string
}

variable "jwt_issuer" {
  type = string
}

variable "jwt_audience" {
  type = list(string)
}

variable "cors_allow_origins" {
  type = list(string)
}

variable "throttling_rate_limit" {
  type = number
}

variable "throttling_burst_limit" {
  type = number
}

variable "log_retention_days" {
  type = number
}
