output "deploy_role_arn" {
  value = one(aws_iam_role.deploy[*].arn)
}
