"""Queue members: pause intervals and the controller-enforced wrap-up time."""
