"""famipose.inference."""
