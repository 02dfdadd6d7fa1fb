output "vpc_id" {
  value = aws_vpc.this.id
}

output "private_subnet_ids" {
  value = aws_subnet.private[*].id
}

output "function_security_group_id" {
  value = aws_security_group.functions.id
}

# Ids of what the private subnets need to reach AWS APIs; the bootstrap invocation waits for them.
output "egress_ready" {
  value = join(",", concat(aws_route.private_default[*].id, [aws_vpc_endpoint.s3.id], aws_route_table_association.private[*].id))
}
