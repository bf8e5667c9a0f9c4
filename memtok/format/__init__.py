"""The memory file: a safetensors file whose header is checked field by field, and its sizes."""
