"""Model zoo: RGB ResNets (torchvision-compatible), EfficientNet-Lite0, DCT-input ResNet-50s and
converted (exact DCT-input) networks, one registry.

    resolve(model, *, weights=None, ...) -> ModelBundle   the one way a model is loaded (resolve.py)
    create_model(name, *, num_classes=1000, weights=None, **kwargs), list_models(pattern=None)
    save_checkpoint / load_checkpoint / load_model: the one checkpoint format
    model_complexity / count_macs / count_params: GMACs and parameters (flops.py)
"""

from .registry import default_weights, is_model, list_models, model_builder, register_model
from .checkpoint import Checkpoint, load_checkpoint, load_weights, read_state_dict, save_checkpoint
from .bundle import ModelBundle
from .resolve import create_model, load_model, resolve
from .onnx import OnnxModel
from .resnet import InputConfig, ResNet
from .resnet_dct import DCTResNet, init_from_rgb
from .efficientnet import EfficientNetLite
from .decode_path import DCTFrontEnd, converted_layout
from .convert import from_rgb, stem_macs
from .flops import CONVENTION, Complexity, count_macs, count_params, model_complexity

__all__ = ["CONVENTION", "Checkpoint", "Complexity", "DCTFrontEnd", "DCTResNet", "EfficientNetLite", "InputConfig",
           "ModelBundle", "OnnxModel", "ResNet", "converted_layout", "count_macs", "count_params", "create_model",
           "default_weights", "from_rgb", "init_from_rgb", "is_model", "list_models", "load_checkpoint", "load_model",
           "load_weights", "model_builder", "model_complexity", "read_state_dict", "register_model", "resolve",
           "save_checkpoint", "stem_macs"]
