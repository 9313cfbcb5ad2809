"""`cmadapter report`: pictures and tables of what a run learned, in one self-contained HTML page."""
