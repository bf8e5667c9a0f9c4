"""Decoding from memory vectors: greedy (what verifies a memory), beam search, and scoring."""
