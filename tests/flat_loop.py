"""A tiny training loop over a list of layers that drives the full-batch and derivative-free
optimizers through :mod:`fusenet.optimizers.flat`, exactly as the model's ``fit`` does (without
importing :mod:`fusenet.models`). Shared by ``test_optimizers_fullbatch`` and ``test_metaheuristics``.
"""

from __future__ import annotations

import numpy as np

from fusenet import losses, optimizers

__all__ = ["FlatLoop"]


class FlatLoop:
    """``layers`` applied in order, trained on the full batch with ``loss``.

    Attributes:
        n_forward: forward passes run so far (to compare with the optimizer's ``nfev``).
    """

    def __init__(self, layer_list, loss):
        self.layers = list(layer_list)
        self.loss = losses.get(loss)
        self.n_forward = 0

    def forward(self, x, training=False):
        for layer in self.layers:
            x = layer(x, training=training)
        self.n_forward += 1
        return x

    def backward(self, dy):
        for layer in reversed(self.layers):
            dy = layer.backward(layer.activity_gradient(dy))

    def build(self, x):
        self.forward(x[:1])
        self.n_forward = 0

    def regularization_loss(self) -> float:
        return float(sum(layer.regularization_loss() for layer in self.layers))

    def objective(self, x, y):
        """The model's two callables and the objective over the layers' trainable parameters."""
        layers = self.layers

        def forward_backward():
            for layer in layers:
                layer.zero_grad()
            y_pred = self.forward(x, training=True)
            value, dy = self.loss.value_and_gradient(y, y_pred)
            loss = value + self.regularization_loss()
            self.backward(dy.astype(y_pred.dtype, copy=False))
            for layer in layers:
                layer.add_regularization_gradients()
            return loss

        def forward_loss():
            y_pred = self.forward(x, training=False)
            return self.loss(y, y_pred) + self.regularization_loss()

        return optimizers.make_objective(layers, forward_backward=forward_backward, forward_loss=forward_loss)

    def fit(self, optimizer, x, y, batch_size=None, callback=None):
        """Train with ``optimizer``; returns one log dict per iteration (the loop's "History")."""
        optimizers.check_batch_size(optimizer, batch_size, x.shape[0], "FlatLoop.fit")
        self.build(x)
        objective = self.objective(x, y)
        history = []

        def on_iteration(info):
            history.append({"epoch": info.iteration - 1, "loss": info.fun, "nfev": info.nfev})
            return callback(info) if callback is not None else False

        optimizer.minimize(objective, callback=on_iteration)
        for layer in self.layers:
            layer.apply_constraints()
        return history

    def predict(self, x):
        return self.forward(x)

    def flat_weights(self) -> np.ndarray:
        return optimizers.FlatParameters.from_layers(self.layers).get()
