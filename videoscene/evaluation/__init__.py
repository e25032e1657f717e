"""Metrics (FVD, consistency, structure matching, PSNR/SSIM/LPIPS) register in ``METRICS`` here."""
