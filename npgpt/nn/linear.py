"""Linear layer in PyTorch's layout: the weight is (out_features, in_features).

Shapes: x (..., IN) -> y (..., OUT); weight (OUT, IN); bias (OUT,) or None.
"""

from __future__ import annotations


def linear_forward(x, weight, bias=None):
    """y = x @ weight.T + bias.

    Parameters
    ----------
    x : ndarray (..., IN)
    weight : ndarray (OUT, IN), ``nn.Linear.weight``'s layout.
    bias : ndarray (OUT,) or None

    Returns
    -------
    y : ndarray (..., OUT)
    cache : (x, weight, has_bias) for :func:`linear_backward`.

    Examples
    --------
    >>> import numpy as np
    >>> linear_forward(np.ones((1, 2)), np.array([[1.0, 2.0]]), np.array([0.5]))[0].tolist()
    [[3.5]]
    """
    # one 2-D matrix product over every leading position (a stacked (B, T, IN) product would
    # run B separate small products)
    y = x.reshape(-1, x.shape[-1]) @ weight.T             # (N, IN) @ (IN, OUT) -> (N, OUT)
    if bias is not None:
        y += bias
    return y.reshape(*x.shape[:-1], weight.shape[0]), (x, weight, bias is not None)


def linear_backward(dy, cache):
    """Gradients of y = x @ weight.T + bias.

    forward: y = x @ Wᵀ + b, so dx = dy @ W, dW = dyᵀ @ x (summed over every leading axis),
    db = dy summed over every leading axis.

    Parameters
    ----------
    dy : ndarray (..., OUT), the gradient of the loss with respect to y.
    cache : from :func:`linear_forward`.

    Returns
    -------
    dx : ndarray (..., IN); dweight : ndarray (OUT, IN); dbias : ndarray (OUT,) or None.
    """
    x, weight, has_bias = cache
    dy2 = dy.reshape(-1, dy.shape[-1])                    # (..., OUT) -> (N, OUT)
    dx = (dy2 @ weight).reshape(x.shape)                  # (N, OUT) @ (OUT, IN) -> (N, IN) -> (..., IN)
    dweight = dy2.T @ x.reshape(-1, x.shape[-1])          # (OUT, N) @ (N, IN) -> (OUT, IN)
    dbias = dy2.sum(axis=0) if has_bias else None         # (N, OUT) -> (OUT,)
    return dx, dweight, dbias
