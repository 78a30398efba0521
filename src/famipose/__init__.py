"""famipose: FAMI-Pose video-based human pose estimation in PyTorch."""

__version__ = "0.1.0"
