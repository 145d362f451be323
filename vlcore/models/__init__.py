"""Model definitions: CLIP (clip.py), captioners, VQ-VAE and DALL-E; no training code."""
