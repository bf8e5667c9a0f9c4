"""Training what the core uses but does not train: the learned start (`memtok train-start`)."""
