"""Where a memory starts: the learned start and its networks, and semantic codes with their teachers."""
