"""dfdet: generalizable deepfake detection with CLIP ViT-L/14 (LN-tuning, L2-norm, SLERP)."""
__version__ = "0.1.0"
