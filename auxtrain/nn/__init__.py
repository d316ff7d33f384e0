"""Reusable layers: selective (multi-domain) batch norm, its converters, input normalisation."""

from auxtrain.nn.convert import SelectiveBatchNormAct2d as SelectiveBatchNormAct2d
from auxtrain.nn.convert import convert_selective_bn as convert_selective_bn
from auxtrain.nn.convert import has_selective_bn as has_selective_bn
from auxtrain.nn.convert import register_bn_converter as register_bn_converter
from auxtrain.nn.convert import revert_selective_bn as revert_selective_bn
from auxtrain.nn.normalize import InputNormalization as InputNormalization
from auxtrain.nn.selective_bn import SelectiveBatchNorm2d as SelectiveBatchNorm2d
from auxtrain.nn.selective_bn import route_domains as route_domains

__all__ = [
    "InputNormalization", "SelectiveBatchNorm2d", "SelectiveBatchNormAct2d", "convert_selective_bn",
    "has_selective_bn", "register_bn_converter", "revert_selective_bn",
    "route_domains",
]
