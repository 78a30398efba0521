"""famipose.engine."""
