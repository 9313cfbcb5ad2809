"""Evaluation: encoding a split, retrieval metrics, transductive post-processing, method comparisons."""
