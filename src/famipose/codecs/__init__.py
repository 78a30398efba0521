"""famipose.codecs."""
