"""Int8 post-training quantization: PyTorch's dynamic recipe on flatjax's BERT.

:mod:`flatjax.quant.int8` is the arithmetic (configs, weight and activation
quantization, the int8 dense layer), :mod:`flatjax.quant.model` the quantized
params and forward pass, :mod:`flatjax.quant.export` the int8 file.
"""

from flatjax.quant.export import file_sizes, load_quantized, save_quantized
from flatjax.quant.int8 import CONFIGS, QArray, QuantConfig, get_config
from flatjax.quant.model import (QuantizedParams, dequantize_params, make_quantized_eval_step,
                                 quantize_params, quantized_apply)
