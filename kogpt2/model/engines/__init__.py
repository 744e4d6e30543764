"""One module per inference engine; each imports the seam, never another engine."""
