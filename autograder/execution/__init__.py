"""Running a notebook in a sandboxed Jupyter kernel, and calling into that kernel with plain data."""
