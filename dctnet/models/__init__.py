"""Model zoo: RGB ResNets (torchvision-compatible) and DCT-input ResNet-50s, one registry.

    create_model(name, *, num_classes=1000, weights=None, **kwargs), list_models(pattern=None)
    save_checkpoint / load_checkpoint / load_model: the one checkpoint format
    model_complexity / count_macs / count_params: GMACs and parameters (flops.py)
"""

from .checkpoint import Checkpoint, load_checkpoint, load_model, load_weights, read_state_dict, save_checkpoint
from .flops import CONVENTION, Complexity, count_macs, count_params, model_complexity
from .registry import create_model, is_model, list_models, register_model
from .resnet import InputConfig, ResNet
from .resnet_dct import DCTResNet, init_from_rgb
from .convert import DCTFrontEnd, converted_layout, from_rgb, stem_macs

__all__ = ["CONVENTION", "Checkpoint", "Complexity", "DCTFrontEnd", "DCTResNet", "converted_layout", "from_rgb", "stem_macs", "InputConfig", "ResNet", "count_macs", "count_params",
           "create_model", "init_from_rgb", "is_model", "list_models", "load_checkpoint", "load_model", "load_weights",
           "model_complexity", "read_state_dict", "register_model", "save_checkpoint"]
