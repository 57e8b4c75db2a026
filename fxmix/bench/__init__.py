"""`fxmix bench ...`: benchmarks that print their figures and the command that reproduces them."""
