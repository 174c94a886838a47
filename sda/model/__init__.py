"""The RVQ-VAE: codebooks, the residual quantizer, encoder and decoder, losses, codebook health."""
