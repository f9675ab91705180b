"""Linear probes on the frozen FaceCycle conv feature (expression, head pose) and their baselines."""
