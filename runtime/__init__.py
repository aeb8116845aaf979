"""deblur-edge runtime: run exported deblurring models on ONNX Runtime. Never imports torch.

>>> from deblur.runtime import Deblurrer
>>> sharp = Deblurrer("model.onnx")(cv2.imread("blurry.jpg"))
"""

from .deblurrer import Deblurrer, default_model_path
from .errors import DeblurError, InputError, ModelError, ProviderError
from .image_io import read_image, read_image_and_metadata, write_image
from .metadata import Metadata, upright_exif
from .model_info import ModelInfo
from .providers import available_providers
from .version import __version__

__all__ = ["Deblurrer", "DeblurError", "InputError", "Metadata", "ModelError", "ModelInfo", "ProviderError",
           "__version__", "available_providers", "default_model_path", "read_image", "read_image_and_metadata",
           "upright_exif", "write_image"]
