"""Hand-run load generators and the baselines they are compared with (not part of the tests)."""
