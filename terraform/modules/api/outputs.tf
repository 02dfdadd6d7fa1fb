output "api_url" {
  value = aws_apigatewayv2_api.this.api_endpoint
}
