"""The offline demo: a synthetic text-video dataset, a tiny CLIP pretrained on it, and the end-to-end run."""
