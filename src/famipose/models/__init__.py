"""famipose.models."""
