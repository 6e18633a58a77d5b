"""Backbones: a small conv net for toy images, and torchvision ResNets with frozen BatchNorm.

Module names follow the reference implementation (``backbone.0.body.layer1...``,
``backbone.1`` is the position encoding) so official checkpoints load key for key.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detr_core.config import DETRConfig
from detr_core.model.nested_tensor import NestedTensor
from detr_core.model.position_encoding import build_position_encoding

log = logging.getLogger(__name__)


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm2d with fixed statistics and affine parameters (eps inside the rsqrt, as in DETR)."""

    def __init__(self, n: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.folded = False  # True when the preceding conv applies this normalization itself
        self.register_buffer("weight", torch.ones(n))
        self.register_buffer("bias", torch.zeros(n))
        self.register_buffer("running_mean", torch.zeros(n))
        self.register_buffer("running_var", torch.ones(n))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def scale_shift(self) -> tuple[Tensor, Tensor]:
        """The affine map this layer applies: y = x * scale + shift, both [C]."""
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        return scale, self.bias - self.running_mean * scale

    def forward(self, x: Tensor) -> Tensor:
        if self.folded:
            return x
        scale, shift = self.scale_shift()
        return torch.addcmul(shift.to(x.dtype).view(1, -1, 1, 1), x, scale.to(x.dtype).view(1, -1, 1, 1))


class FoldedConv2d(nn.Conv2d):
    """A convolution followed by a frozen BatchNorm, as one module (the state dict is unchanged).

    Frozen convs (the stem and layer1, as in the reference) run as a single convolution with
    scaled weights and a bias: no extra pass over their large early activations. Trained convs
    keep their weights as they are and normalize the output in its own dtype, which is cheaper
    for the small late feature maps than re-scaling big weight tensors every step, and keeps
    bfloat16 activations in bfloat16 under autocast.
    """

    _frozen_bn: FrozenBatchNorm2d

    def forward(self, x: Tensor) -> Tensor:
        scale, shift = self._frozen_bn.scale_shift()
        if not self.weight.requires_grad:
            with torch.no_grad():
                weight = self.weight * scale.view(-1, 1, 1, 1)
            return F.conv2d(x, weight, shift, self.stride, self.padding, self.dilation, self.groups)
        y = F.conv2d(x, self.weight, None, self.stride, self.padding, self.dilation, self.groups)
        return torch.addcmul(shift.to(y.dtype).view(1, -1, 1, 1), y, scale.to(y.dtype).view(1, -1, 1, 1))


def fold_frozen_batchnorm(resnet: nn.Module) -> None:
    """Fold every conv -> FrozenBatchNorm2d pair of a torchvision ResNet (in place)."""
    import torchvision  # on use: importing torchvision costs seconds at startup

    pairs: list[tuple[nn.Module, str, str]] = [(resnet, "conv1", "bn1")]
    for module in resnet.modules():
        if isinstance(module, (torchvision.models.resnet.BasicBlock, torchvision.models.resnet.Bottleneck)):
            pairs += [(module, f"conv{i}", f"bn{i}") for i in (1, 2, 3) if hasattr(module, f"conv{i}")]
            if module.downsample is not None:
                pairs.append((module.downsample, "0", "1"))
    for parent, conv_name, bn_name in pairs:
        conv, bn = getattr(parent, conv_name), getattr(parent, bn_name)
        if not isinstance(bn, FrozenBatchNorm2d) or not type(conv) is nn.Conv2d or conv.bias is not None:
            continue
        folded = FoldedConv2d(
            conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
            conv.dilation, conv.groups, bias=False,
        )
        folded.weight = conv.weight
        object.__setattr__(folded, "_frozen_bn", bn)  # a reference, not a second registration
        bn.folded = True
        setattr(parent, conv_name, folded)


def _conv_bn_relu(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
    return [
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]


class TinyBody(nn.Module):
    """A plain conv net for 128x128 toy images, trained from scratch with ordinary BatchNorm.

    Output stride 8 (a 16x16 grid on 128 px), 16 or 32; channels width, 2*width, 4*width.
    """

    def __init__(self, stride: int = 8, width: int = 32) -> None:
        super().__init__()
        w1, w2, w3 = width, 2 * width, 4 * width
        layers = (
            _conv_bn_relu(3, w1, 2)  # /2
            + _conv_bn_relu(w1, w2, 2)  # /4
            + _conv_bn_relu(w2, w2, 1)
            + _conv_bn_relu(w2, w3, 2)  # /8
            + _conv_bn_relu(w3, w3, 1)
        )
        for _ in range({8: 0, 16: 1, 32: 2}[stride]):
            layers += _conv_bn_relu(w3, w3, 2)
        self.layers = nn.Sequential(*layers)
        self.stride = stride
        self.num_channels = w3

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return {"0": self.layers(x)}


def _cached_imagenet_weights(name: str) -> Path | None:
    """Path of torchvision's ImageNet weights for ``name`` if already in the torch cache."""
    import torchvision  # on use: importing torchvision costs seconds at startup

    weights_enum = torchvision.models.get_model_weights(name)
    url = weights_enum.IMAGENET1K_V1.url
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
    return path if path.is_file() else None


def custom_resnet(depths: tuple[int, ...], widths: tuple[int, ...], block: str, dilation: bool = False) -> nn.Module:
    """A torchvision-style ResNet of any size (keys ``conv1``, ``bn1``, ``layer1.0.conv1`` ...,
    ``downsample.0/1``), for files from libraries whose ResNets are configurable (Hugging Face).

    depths: blocks per stage (4); widths: stem channels, then each stage's output channels (5).
    A bottleneck's inner width is a quarter of its output (ResNet's reduction of 4)."""
    import torchvision  # on use: importing torchvision costs seconds at startup

    stem, *outs = widths
    resnet = nn.Module()
    resnet.conv1 = nn.Conv2d(3, stem, 7, stride=2, padding=3, bias=False)
    resnet.bn1 = FrozenBatchNorm2d(stem)
    resnet.relu = nn.ReLU(inplace=True)
    resnet.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
    c_in = stem
    for i, (depth, c_out) in enumerate(zip(depths, outs)):
        stride = 1 if i == 0 else 2
        dil = 1
        if dilation and i == 3:
            stride, dil = 1, 2
        blocks = []
        for j in range(depth):
            s = stride if j == 0 else 1
            downsample = None
            if j == 0 and (s != 1 or c_in != c_out):
                downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=s, bias=False), FrozenBatchNorm2d(c_out))
            if block == "bottleneck":
                # torchvision's first block of a dilated stage keeps the previous dilation (1)
                b: nn.Module = torchvision.models.resnet.Bottleneck(
                    c_in, c_out // 4, s, downsample, dilation=1 if j == 0 else dil, norm_layer=FrozenBatchNorm2d
                )
            else:
                b = torchvision.models.resnet.BasicBlock(c_in, c_out, s, downsample, norm_layer=FrozenBatchNorm2d)
            blocks.append(b)
            c_in = c_out
        setattr(resnet, f"layer{i + 1}", nn.Sequential(*blocks))
    return resnet


class Backbone(nn.Module):
    """Image -> feature map with its padding mask. ``body`` holds the conv net."""

    def __init__(self, config: DETRConfig) -> None:
        super().__init__()
        name = config.backbone
        if name == "tiny":
            body = TinyBody(config.tiny_stride, config.tiny_width)
            self.body: nn.Module = body
            self.num_channels = body.num_channels
            self.stride = body.stride
            if not config.train_backbone:
                self.body.requires_grad_(False)
            # channels-last (NHWC), as the ResNets: the fast preset's float32 training step runs
            # 1.14x faster (1.08x in bfloat16). The price: the channels-last BatchNorm backward sums
            # in plain float32, so this net's gradients sit ~1e-3 (relative) from float64 instead of
            # ~1e-6 in NCHW; bfloat16 autocast is ~100x coarser still.
            self.body.to(memory_format=torch.channels_last)
            self.channels_last = True
            return
        import torchvision  # on use: importing torchvision costs seconds at startup
        from torchvision.models._utils import IntermediateLayerGetter

        # DC5: the last stage keeps stride 16 and dilates its 3x3 convs instead (as the reference)
        dilate = [False, False, config.dilation]
        if name == "resnet":
            resnet = custom_resnet(config.resnet_depths, config.resnet_widths, config.resnet_block, config.dilation)
        else:
            resnet = getattr(torchvision.models, name)(
                weights=None, norm_layer=FrozenBatchNorm2d, replace_stride_with_dilation=dilate
            )
        if config.pretrained_backbone and name != "resnet":
            path = _cached_imagenet_weights(name)
            if path is not None:
                state = torch.load(path, map_location="cpu", weights_only=True)
                resnet.load_state_dict(state, strict=False)
                log.info("loaded ImageNet weights for %s from %s", name, path)
        # As in the reference: the stem and layer1 stay frozen; layer2-4 train unless told not to.
        for pname, p in resnet.named_parameters():
            trainable = config.train_backbone and any(f"layer{i}" in pname for i in (2, 3, 4))
            p.requires_grad_(trainable)
        fold_frozen_batchnorm(resnet)
        self.body = IntermediateLayerGetter(resnet, return_layers={"layer4": "0"})
        self.body.to(memory_format=torch.channels_last)
        self.channels_last = True
        if name == "resnet":
            self.num_channels = config.resnet_widths[-1]
        else:
            self.num_channels = 512 if name in ("resnet18", "resnet34") else 2048
        self.stride = 16 if config.dilation else 32

    def forward(self, samples: NestedTensor) -> NestedTensor:
        x = samples.tensors
        if self.channels_last:
            # ResNets run channels-last (NHWC): oneDNN convolves without reordering to and from its
            # blocked layout, and max pooling runs vectorized over channels (about 9x faster)
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.body(x)["0"]  # [B, C, H/s, W/s]
        mask = F.interpolate(samples.mask[None].float(), size=x.shape[-2:]).to(torch.bool)[0]
        return NestedTensor(x, mask)


class Joiner(nn.Sequential):
    """``backbone.0`` = the conv net, ``backbone.1`` = the position encoding."""

    def __init__(self, backbone: Backbone, position_embedding: nn.Module) -> None:
        super().__init__(backbone, position_embedding)
        self.num_channels = backbone.num_channels
        self.stride = backbone.stride

    def forward(self, samples: NestedTensor) -> tuple[NestedTensor, Tensor]:  # type: ignore[override]
        features = self[0](samples)
        pos = self[1](features.mask).to(features.tensors.dtype)  # [B, D, H/s, W/s]
        return features, pos


def build_backbone(config: DETRConfig) -> Joiner:
    return Joiner(Backbone(config), build_position_encoding(config.position_embedding, config.d_model))
