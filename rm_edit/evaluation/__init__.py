"""Evaluation runs. Functions here take a pipeline object from the caller, so the core never imports it."""
