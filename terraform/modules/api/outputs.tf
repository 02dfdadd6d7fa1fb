output "api_url" {
  value = aws_apigatewayv2_api.this.api_endpoint
}

# For the alarms' and the dashboard's ApiId dimension.
output "api_id" {
  value = aws_apigatewayv2_api.this.id
}
