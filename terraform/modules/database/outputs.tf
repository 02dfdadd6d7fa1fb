# Everything the functions need to connect; the secret ARNs come from the secret versions so
# that nothing reads a secret before its value exists.
output "connection" {
  value = {
    host                = local.create ? aws_db_instance.this[0].address : var.existing_host
    port                = var.port
    name                = var.database_name
    admin_user          = var.admin_user
    admin_secret_arn    = local.admin_secret_arn
    migrator_secret_arn = aws_secretsmanager_secret_version.login["migrator"].arn
    app_secret_arn      = aws_secretsmanager_secret_version.login["app"].arn
    dev_secret_arn      = aws_secretsmanager_secret_version.login["dev"].arn
  }
}
