"""Video decoding and mask / overlay writers."""
