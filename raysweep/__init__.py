"""raysweep: a Ray Tune + Ray Train sweep and ablation engine for CIFAR backbones."""
__version__ = "0.1.0"
