"""famipose.data."""
