"""Console scripts: thin argument parsing over the Python API."""
