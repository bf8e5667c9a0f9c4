"""Encoding: settings resolved once, the schedule of jobs and retries, the batch and its step, the loop."""
