# Everything the functions need to connect; the secret ARNs come from the secret versions so
# that nothing reads a secret before its value exists.
output "connection" {
  value = {
    host                = local.create ? aws_db_instance.this[0].address : var.existing_host
    proxy_host          = local.proxy ? aws_db_proxy.this[0].endpoint : ""
    port                = var.port
    name                = var.database_name
    admin_user          = var.admin_user
    admin_secret_arn    = local.admin_secret_arn
    migrator_secret_arn = aws_secretsmanager_secret_version.login["migrator"].arn
    app_secret_arn      = aws_secretsmanager_secret_version.login["app"].arn
    dev_secret_arn      = aws_secretsmanager_secret_version.login["dev"].arn
  }
}

# For the alarms' and the dashboard's DBInstanceIdentifier dimension ("none" without an instance).
output "instance_identifier" {
  value = local.create ? aws_db_instance.this[0].identifier : "none"
}
