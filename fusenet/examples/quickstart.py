"""A forward and backward pass through a small network: the layer contract in twenty lines.

Run with ``python -m fusenet.examples.quickstart``.
"""

from __future__ import annotations

import numpy as np

import fusenet
from fusenet import layers


def main() -> None:
    fusenet.set_random_seed(0)
    rng = np.random.default_rng(0)
    net = [layers.Dense(16, activation="relu"), layers.Dropout(0.1, seed=0), layers.Dense(3)]
    x = rng.normal(size=(32, 8))
    target = rng.normal(size=(32, 3))

    h = x
    for layer in net:
        h = layer(h, training=True)
    loss = 0.5 * np.mean((h - target) ** 2)
    grad = (h - target) / h.size
    for layer in reversed(net):
        grad = layer.backward(grad)

    print(f"output {h.shape}, loss {loss:.6f}")
    for layer in net:
        for name, g in layer.grads.items():
            print(f"  {layer.name:>10s}.{name:<6s} {str(g.shape):>10s}  |grad| = {np.linalg.norm(g):.6f}")
    print(f"input gradient {grad.shape}, |dx| = {np.linalg.norm(grad):.6f}")


if __name__ == "__main__":
    main()
