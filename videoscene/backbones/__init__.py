"""Video diffusion backbones (CogVideoX, SVD, DynamiCrafter) register in ``VIDEO_BACKBONES`` here."""
