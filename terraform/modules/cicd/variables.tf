variable "name" {
  type = string
}

variable "github_repository" {
  type = string
}

variable "github_deploy_subject" {
  type = string
}

variable "github_oidc_provider_arn" {
  type = string
}
