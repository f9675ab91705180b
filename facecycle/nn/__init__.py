"""FaceCycle network modules (PyTorch). Importing this package requires torch."""
from .blocks import ResBlock, SelfAttention
from .encoder import Encoder
from .generator import Generator
from .motion import MotionDecoder
from .normalizer import Normalizer
from .vgg import VGGFront, load_vgg19_front
from .warp import backflow, flow_intensity, warp

__all__ = [
    "ResBlock", "SelfAttention", "Encoder", "Generator", "MotionDecoder", "Normalizer",
    "VGGFront", "load_vgg19_front", "backflow", "flow_intensity", "warp",
]
