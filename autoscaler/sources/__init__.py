"""Where the autoscaler's metrics come from: the target's pods, or Prometheus."""
