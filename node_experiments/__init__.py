"""node-experiments: run, reproduce and study the experiments of Neural ODEs (Chen et al., NeurIPS 2018)."""

__version__ = "0.1.0"
