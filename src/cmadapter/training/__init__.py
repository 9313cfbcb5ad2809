"""Training: the trainer, its state and resume, optimizer and schedule, batches, processes, loss, memory."""
