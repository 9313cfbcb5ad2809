"""Video in: decoding (PyAV), frame folders, frame sampling, CLIP preprocessing, frame sources and the cache."""
