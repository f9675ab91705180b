"""Training: the FaceCycle trainer, its state files and preview images."""
