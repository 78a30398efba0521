"""famipose.evaluation."""
