"""sda: train RVQ-VAE models on small personal audio collections, with codebook health in view."""

__version__ = "0.1.0"
