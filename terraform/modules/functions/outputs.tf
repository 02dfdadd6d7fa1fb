output "function_names" {
  value = merge(
    { for key, fn in aws_lambda_function.this : key => fn.function_name },
    { bootstrap = aws_lambda_function.bootstrap.function_name },
  )
}

output "function_arns" {
  value = merge(
    { for key, fn in aws_lambda_function.this : key => fn.arn },
    { bootstrap = aws_lambda_function.bootstrap.arn },
  )
}

output "rds_ca_layer_arn" {
  value = aws_lambda_layer_version.rds_ca.arn
}

# What callers invoke: the alias `live` of the app functions.
output "alias_arns" {
  value = { for key, alias in aws_lambda_alias.live : key => alias.arn }
}

output "alias_name" {
  value = "live"
}
