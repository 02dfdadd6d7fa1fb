variable "name" {
  type = string
}

variable "vpc_cidr" {
  type = string
}

variable "nat_gateway_per_az" {
  type = bool
}
