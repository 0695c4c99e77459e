"""The five reference models of ``/work/shared/BENCHMARKS.md`` in fusenet and, when torch is installed, in
PyTorch with the same weights, so that both compute the same function on the same batch.

=============  ==========  ====================  ===========================================================
model          batch       input (fusenet)       layers
=============  ==========  ====================  ===========================================================
``mlp``        256         ``(784,)``            Dense 784->512, BN, ReLU, Dropout 0.2, Dense 512->512, BN,
                                                 ReLU, Dropout 0.2, Dense 512->10
``cnn``        64          ``(32, 32, 3)``       [Conv2D 3x3 "same" no bias, BN, ReLU] x 2 (32), MaxPool 2,
                                                 [..] x 2 (64), MaxPool 2, Flatten, Dense 4096->128, ReLU,
                                                 Dropout 0.3, Dense 128->10
``resnet``     64          ``(32, 32, 3)``       ResNet-20 style: stem Conv 3x3 (32) + BN + ReLU, three stages
                                                 of two basic blocks (32, 64, 128; stride 2 and a 1x1 conv + BN
                                                 projection in the first block of stages 2 and 3), global
                                                 average pooling, Dense 128->10
``transformer``  32        ``(64, 128)``         two pre-norm TransformerEncoderBlocks (d_model 128, 4 heads,
                                                 feed-forward 512, GELU, dropout 0.1), mean over the
                                                 sequence, Dense 128->10
``lstm``       64          ``(100, 128)``        LSTM 256 (last hidden state), Dense 256->10
=============  ==========  ====================  ===========================================================

Weight mapping fusenet -> torch: Dense ``kernel (in, out)`` -> ``Linear.weight = kernel.T``; Conv2D
``kernel (kh, kw, in, out)`` -> ``weight (out, in, kh, kw)``; BatchNormalization gamma/beta/moving
statistics -> ``weight``/``bias``/``running_mean``/``running_var`` (torch ``momentum = 1 - 0.99``,
``eps = 1e-3``); the cnn's first Dense reads a channels-last flatten ``(h, w, c)``, torch's flatten is
``(c, h, w)``, so its kernel rows are permuted; LSTM ``kernel.T``/``recurrent_kernel.T`` are
``weight_ih``/``weight_hh`` (Keras gates i, f, c, o are torch's i, f, g, o) with the bias in
``bias_ih`` and zeros in ``bias_hh``; MultiHeadAttention's query/key/value kernels ``(d, heads, key_dim)``
stack into ``in_proj_weight`` and the output kernel ``(heads, key_dim, d)`` is ``out_proj.weight.T``.
Keras ``"same"`` padding with stride 2 pads one zero at the end only; torch's stride-2 3x3 convolutions
get the same ``ZeroPad2d((0, 1, 0, 1))`` so that the outputs agree.

Modes: ``eval`` is inference (torch: ``model.eval()`` under ``torch.inference_mode()``); ``train`` is one
step on one batch: forward, sparse categorical cross-entropy on the logits, backward and an SGD update
with momentum 0.9 (learning rate 0.01).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

try:
    import fusenet  # noqa: F401
except ImportError:  # run as a script from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import fusenet  # noqa: E402
from fusenet import layers, losses, models, optimizers  # noqa: E402

try:
    import torch
    from torch import nn
except ImportError:  # the torch side is optional
    torch = None
    nn = None

__all__ = ["MODELS", "SPECS", "build_fusenet", "build_torch", "make_batch", "torch_batch", "fusenet_eval",
           "fusenet_train_step", "torch_eval", "torch_optimizer", "torch_train_step", "compiled",
           "max_output_difference"]

MODELS = ("mlp", "cnn", "resnet", "transformer", "lstm")
SPECS = {
    "mlp": {"batch": 256, "input_shape": (784,), "image": False},
    "cnn": {"batch": 64, "input_shape": (32, 32, 3), "image": True},
    "resnet": {"batch": 64, "input_shape": (32, 32, 3), "image": True},
    "transformer": {"batch": 32, "input_shape": (64, 128), "image": False},
    "lstm": {"batch": 64, "input_shape": (100, 128), "image": False},
}
CLASSES = 10
LEARNING_RATE, MOMENTUM = 0.01, 0.9


def _check_name(name):
    if name not in SPECS:
        raise ValueError(f"Unknown reference model {name!r}; expected one of {list(MODELS)}.")


# ---------------------------------------------------------------- fusenet
def _conv_bn_relu(filters, strides=1):
    return [layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False), layers.BatchNormalization(),
            layers.ReLU()]


def _basic_block(filters, strides, project):
    body = [layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False), layers.BatchNormalization(),
            layers.ReLU(), layers.Conv2D(filters, 3, padding="same", use_bias=False), layers.BatchNormalization()]
    shortcut = None
    if project:
        shortcut = [layers.Conv2D(filters, 1, strides=strides, padding="same", use_bias=False),
                    layers.BatchNormalization()]
    return [layers.Residual(body, shortcut=shortcut), layers.ReLU()]


def _fusenet_layers(name):
    if name == "mlp":
        return [layers.Dense(512), layers.BatchNormalization(), layers.ReLU(), layers.Dropout(0.2),
                layers.Dense(512), layers.BatchNormalization(), layers.ReLU(), layers.Dropout(0.2), layers.Dense(CLASSES)]
    if name == "cnn":
        return (_conv_bn_relu(32) + _conv_bn_relu(32) + [layers.MaxPooling2D(2)] + _conv_bn_relu(64) + _conv_bn_relu(64)
                + [layers.MaxPooling2D(2), layers.Flatten(), layers.Dense(128), layers.ReLU(), layers.Dropout(0.3),
                   layers.Dense(CLASSES)])
    if name == "resnet":
        out = _conv_bn_relu(32)
        for width, first_strides in ((32, 1), (64, 2), (128, 2)):
            out += _basic_block(width, first_strides, project=first_strides != 1)
            out += _basic_block(width, 1, project=False)
        return out + [layers.GlobalAveragePooling2D(), layers.Dense(CLASSES)]
    if name == "transformer":
        return [layers.TransformerEncoderBlock(128, 4, 512, dropout=0.1, norm_first=True, activation="gelu"),
                layers.TransformerEncoderBlock(128, 4, 512, dropout=0.1, norm_first=True, activation="gelu"),
                layers.GlobalAveragePooling1D(), layers.Dense(CLASSES)]
    return [layers.LSTM(256), layers.Dense(CLASSES)]


def build_fusenet(name: str, seed: int = 0) -> models.Sequential:
    """The reference model ``name`` as a built fusenet Sequential (float32, weights from ``seed``),
    compiled for the train step (SGD momentum 0.9, sparse categorical cross-entropy on logits)."""
    _check_name(name)
    fusenet.set_random_seed(seed)
    model = models.Sequential([layers.Input(SPECS[name]["input_shape"])] + _fusenet_layers(name), name=name)
    compiled(model)
    return model


def compiled(model):
    """Compile ``model`` for the reference train step (returns it)."""
    model.compile(optimizers.SGD(learning_rate=LEARNING_RATE, momentum=MOMENTUM),
                  losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def make_batch(name: str, seed: int = 0):
    """``(x, y)``: a float32 batch of the model's input shape (channels-last) and integer labels."""
    _check_name(name)
    spec = SPECS[name]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((spec["batch"],) + spec["input_shape"], dtype=np.float32)
    y = rng.integers(0, CLASSES, size=spec["batch"])
    return x, y


def fusenet_eval(model, x):
    """Inference on one batch."""
    return model(x, training=False)


def fusenet_train_step(model, x, y):
    """One training step (forward, loss, backward, SGD update) on one batch."""
    return model.train_on_batch(x, y)


# ---------------------------------------------------------------- torch
def _require_torch():
    if torch is None:
        raise ImportError("PyTorch is not installed: the torch reference models are not available.")


def _t(a):
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def _copy_bn(module, bn):
    w = bn.get_weights()  # gamma, beta, moving_mean, moving_variance
    with torch.no_grad():
        module.weight.copy_(_t(w[0]))
        module.bias.copy_(_t(w[1]))
        module.running_mean.copy_(_t(w[2]))
        module.running_var.copy_(_t(w[3]))


def _copy_dense(module, dense, row_order=None):
    kernel = dense.params["kernel"]
    if row_order is not None:
        kernel = kernel[row_order]
    with torch.no_grad():
        module.weight.copy_(_t(kernel.T))
        if module.bias is not None:
            module.bias.copy_(_t(dense.params["bias"]))


def _copy_conv(module, conv):
    with torch.no_grad():
        module.weight.copy_(_t(conv.params["kernel"].transpose(3, 2, 0, 1)))
        if module.bias is not None:
            module.bias.copy_(_t(conv.params["bias"]))


def _bn2d(channels):
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)


def _torch_conv(conv, in_channels):
    """A torch Conv2d computing the same as the fusenet Conv2D (Keras "same" padding)."""
    k, s = conv.kernel_size[0], conv.strides[0]
    if s == 1:
        module = nn.Conv2d(in_channels, conv.filters, k, padding=k // 2, bias=conv.use_bias)
        _copy_conv(module, conv)
        return module
    module = nn.Conv2d(in_channels, conv.filters, k, stride=s, padding=0, bias=conv.use_bias)
    _copy_conv(module, conv)
    if k == 1:  # a strided 1x1 convolution needs no padding in Keras "same" either
        return module
    if k != 3 or s != 2:
        raise ValueError(f"Only stride-2 3x3 and 1x1 convolutions are mapped. Received: kernel {k}, stride {s}")
    # Keras "same" with stride 2 on an even size pads one zero at the end (right and bottom) only
    return nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), module)


class _TorchBasicBlock(nn.Module if nn is not None else object):
    def __init__(self, residual, in_channels):
        super().__init__()
        c1, b1, _, c2, b2 = residual.body
        self.conv1, self.bn1 = _torch_conv(c1, in_channels), _bn2d(c1.filters)
        self.conv2, self.bn2 = _torch_conv(c2, c1.filters), _bn2d(c2.filters)
        _copy_bn(self.bn1, b1)
        _copy_bn(self.bn2, b2)
        self.shortcut = None
        if residual.shortcut:
            conv, bn = residual.shortcut
            self.shortcut = nn.Sequential(_torch_conv(conv, in_channels), _bn2d(conv.filters))
            _copy_bn(self.shortcut[1], bn)
        self.relu = nn.ReLU()

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + (x if self.shortcut is None else self.shortcut(x)))


class _TorchTransformer(nn.Module if nn is not None else object):
    def __init__(self, blocks, head):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.head = head

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return self.head(x.mean(dim=1))


class _TorchLSTM(nn.Module if nn is not None else object):
    def __init__(self, lstm, head):
        super().__init__()
        self.lstm = lstm
        self.head = head

    def forward(self, x):
        _, (h, _) = self.lstm(x)
        return self.head(h[0])


def _torch_encoder_block(block):
    s = block._sublayers
    d, ff = block.d_model, block.ff_dim
    module = nn.TransformerEncoderLayer(d, block.num_heads, ff, dropout=block.dropout, activation="gelu",
                                        layer_norm_eps=block.layer_norm_epsilon, batch_first=True,
                                        norm_first=block.norm_first)
    mha = s["attention"].params
    kernels = [mha[f"{role}_kernel"].reshape(d, -1).T for role in ("query", "key", "value")]
    biases = [mha[f"{role}_bias"].reshape(-1) for role in ("query", "key", "value")]
    with torch.no_grad():
        module.self_attn.in_proj_weight.copy_(_t(np.concatenate(kernels, axis=0)))
        module.self_attn.in_proj_bias.copy_(_t(np.concatenate(biases)))
        module.self_attn.out_proj.weight.copy_(_t(mha["output_kernel"].reshape(-1, d).T))
        module.self_attn.out_proj.bias.copy_(_t(mha["output_bias"]))
        for norm, key in ((module.norm1, "attention_norm"), (module.norm2, "feedforward_norm")):
            norm.weight.copy_(_t(s[key].params["gamma"]))
            norm.bias.copy_(_t(s[key].params["beta"]))
    _copy_dense(module.linear1, s["feedforward_intermediate"])
    _copy_dense(module.linear2, s["feedforward_output"])
    return module


def build_torch(name: str, model: models.Sequential):
    """The torch module of reference model ``name`` holding the weights of the fusenet ``model``
    (float32, 2 threads are set by the caller). Raises ``ImportError`` without torch."""
    _require_torch()
    _check_name(name)
    fl = model.layers
    if name == "mlp":
        d1, bn1, _, _, d2, bn2, _, _, d3 = fl
        module = nn.Sequential(nn.Linear(784, 512), nn.BatchNorm1d(512, eps=1e-3, momentum=0.01), nn.ReLU(),
                               nn.Dropout(0.2), nn.Linear(512, 512), nn.BatchNorm1d(512, eps=1e-3, momentum=0.01),
                               nn.ReLU(), nn.Dropout(0.2), nn.Linear(512, CLASSES))
        for i, layer in zip((0, 1, 4, 5, 8), (d1, bn1, d2, bn2, d3)):
            (_copy_bn if i in (1, 5) else _copy_dense)(module[i], layer)
        return module
    if name == "cnn":
        convs = [layer for layer in fl if isinstance(layer, layers.Conv2D)]
        bns = [layer for layer in fl if isinstance(layer, layers.BatchNormalization)]
        dense1, dense2 = [layer for layer in fl if isinstance(layer, layers.Dense)]
        mods, in_channels = [], 3
        for i, (conv, bn) in enumerate(zip(convs, bns)):
            torch_bn = _bn2d(conv.filters)
            _copy_bn(torch_bn, bn)
            mods += [_torch_conv(conv, in_channels), torch_bn, nn.ReLU()]
            in_channels = conv.filters
            if i in (1, 3):
                mods.append(nn.MaxPool2d(2))
        # fusenet flattens (h, w, c), torch (c, h, w): torch input j = c * 64 + h * 8 + w reads fusenet row
        # h * 512 + w * 64 + c
        order = np.arange(8 * 8 * 64).reshape(8, 8, 64).transpose(2, 0, 1).reshape(-1)
        fc1, fc2 = nn.Linear(4096, 128), nn.Linear(128, CLASSES)
        _copy_dense(fc1, dense1, row_order=order)
        _copy_dense(fc2, dense2)
        return nn.Sequential(*mods, nn.Flatten(), fc1, nn.ReLU(), nn.Dropout(0.3), fc2)
    if name == "resnet":
        stem_conv, stem_bn = fl[0], fl[1]
        bn = _bn2d(32)
        _copy_bn(bn, stem_bn)
        mods, in_channels = [_torch_conv(stem_conv, 3), bn, nn.ReLU()], 32
        for layer in fl:
            if isinstance(layer, layers.Residual):
                mods.append(_TorchBasicBlock(layer, in_channels))
                in_channels = layer.body[0].filters
        head = nn.Linear(128, CLASSES)
        _copy_dense(head, fl[-1])
        return nn.Sequential(*mods, nn.AdaptiveAvgPool2d(1), nn.Flatten(), head)
    if name == "transformer":
        blocks = [_torch_encoder_block(layer) for layer in fl if isinstance(layer, layers.TransformerEncoderBlock)]
        head = nn.Linear(128, CLASSES)
        _copy_dense(head, fl[-1])
        return _TorchTransformer(blocks, head)
    lstm_layer, dense = fl
    lstm = nn.LSTM(128, 256, batch_first=True)
    p = lstm_layer.params
    with torch.no_grad():
        lstm.weight_ih_l0.copy_(_t(p["kernel"].T))
        lstm.weight_hh_l0.copy_(_t(p["recurrent_kernel"].T))
        lstm.bias_ih_l0.copy_(_t(p["bias"]))
        lstm.bias_hh_l0.zero_()
    head = nn.Linear(256, CLASSES)
    _copy_dense(head, dense)
    return _TorchLSTM(lstm, head)


def torch_batch(name: str, x, y):
    """The torch tensors of a batch (images channels-first)."""
    _require_torch()
    if SPECS[name]["image"]:
        x = x.transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.asarray(y, dtype=np.int64))


def torch_eval(module, xt):
    """Inference: ``eval()`` mode under ``torch.inference_mode()``."""
    with torch.inference_mode():
        return module(xt)


def torch_optimizer(module):
    """The reference SGD (momentum 0.9, learning rate 0.01) for ``module``."""
    _require_torch()
    return torch.optim.SGD(module.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM)


def torch_train_step(module, optimizer, xt, yt):
    """One training step: forward, cross-entropy, backward, SGD update."""
    optimizer.zero_grad(set_to_none=True)
    loss = torch.nn.functional.cross_entropy(module(xt), yt)
    loss.backward()
    optimizer.step()
    return loss


def max_output_difference(name: str, model, module, x, y) -> float:
    """Largest absolute difference of the eval logits of the fusenet model and the torch module."""
    module.eval()
    xt, _ = torch_batch(name, x, y)
    return float(np.max(np.abs(torch_eval(module, xt).numpy() - np.asarray(model(x)))))
