"""Conv4d against a float64 direct reference (sum over kernel positions), with hypothesis."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qpebench.baselines.conv4d import Conv4d
from qpebench.errors import ConfigError

_NUMPY_MODE = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def pad_reference(x: torch.Tensor, padding, mode: str) -> torch.Tensor:
    """Pad the 4 trailing axes; non-zero modes through numpy's own padding (independent)."""
    widths = [(0, 0), (0, 0)] + [(p, p) for p in padding]
    if mode == "zeros":
        return torch.nn.functional.pad(x, [v for p in reversed(padding) for v in (p, p)])
    index = np.pad(
        np.arange(x[0, 0].numel()).reshape(x.shape[2:]), widths[2:], mode=_NUMPY_MODE[mode]
    )
    return x.flatten(2)[:, :, torch.as_tensor(index.ravel())].reshape(*x.shape[:2], *index.shape)


def conv4d_reference(x, weight, bias, stride, padding, dilation, groups, mode):
    """out[n,o,t,b,h,w] = bias[o] + Σ w[o,c,i,j,k,l] · x_pad[n, g·C/g + c, t·s + i·d, …]."""
    x = pad_reference(x, padding, mode)
    n, c = x.shape[:2]
    o = weight.shape[0]
    k = weight.shape[2:]
    sizes = [(x.shape[2 + a] - dilation[a] * (k[a] - 1) - 1) // stride[a] + 1 for a in range(4)]
    out = torch.zeros(n, o, *sizes, dtype=x.dtype)
    cg, og = c // groups, o // groups
    for g in range(groups):
        xs = x[:, g * cg : (g + 1) * cg]
        for i in range(k[0]):
            for j in range(k[1]):
                for kk in range(k[2]):
                    for ll in range(k[3]):
                        offs = (i, j, kk, ll)
                        sl = [
                            slice(
                                offs[a] * dilation[a],
                                offs[a] * dilation[a] + stride[a] * (sizes[a] - 1) + 1,
                                stride[a],
                            )
                            for a in range(4)
                        ]
                        patch = xs[:, :, sl[0], sl[1], sl[2], sl[3]]
                        w = weight[g * og : (g + 1) * og, :, i, j, kk, ll]
                        out[:, g * og : (g + 1) * og] += torch.einsum("nctbhw,oc->notbhw", patch, w)
    if bias is not None:
        out += bias.view(1, -1, 1, 1, 1, 1)
    return out


@st.composite
def configurations(draw):
    groups = draw(st.sampled_from([1, 2]))
    cin = groups * draw(st.integers(1, 2))
    cout = groups * draw(st.integers(1, 2))
    k = tuple(draw(st.integers(1, 3)) for _ in range(4))
    s = tuple(draw(st.integers(1, 2)) for _ in range(4))
    d = tuple(draw(st.integers(1, 2)) for _ in range(4))
    p = tuple(draw(st.integers(0, 2)) for _ in range(4))
    mode = draw(st.sampled_from(["zeros", "reflect", "replicate", "circular"]))
    # Input long enough for the (dilated) kernel and, for reflect, longer than the padding.
    sizes = tuple(
        draw(st.integers(max(d[a] * (k[a] - 1) + 1 - 2 * p[a], p[a] + 1, 1), 5)) for a in range(4)
    )
    bias = draw(st.booleans())
    return cin, cout, k, s, d, p, groups, mode, sizes, bias


@settings(max_examples=60, deadline=None)
@given(configurations(), st.integers(0, 2**16))
def test_forward_and_gradients_match_the_direct_reference(config, seed):
    cin, cout, k, s, d, p, groups, mode, sizes, bias = config
    torch.manual_seed(seed)
    conv = Conv4d(
        cin, cout, k, stride=s, padding=p, dilation=d, groups=groups, bias=bias, padding_mode=mode
    ).double()
    x = torch.randn(2, cin, *sizes, dtype=torch.float64, requires_grad=True)
    ours = conv(x)
    x_ref = x.detach().clone().requires_grad_(True)
    w_ref = conv.weight.detach().clone().requires_grad_(True)
    b_ref = conv.bias.detach().clone().requires_grad_(True) if bias else None
    ref = conv4d_reference(x_ref, w_ref, b_ref, s, p, d, groups, mode)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)
    upstream = torch.randn_like(ref)
    (ours * upstream).sum().backward()
    (ref * upstream).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(conv.weight.grad, w_ref.grad, rtol=1e-10, atol=1e-10)
    if bias:
        torch.testing.assert_close(conv.bias.grad, b_ref.grad, rtol=1e-10, atol=1e-10)


def test_one_bias_per_output_channel_and_conv3d_initialisation():
    torch.manual_seed(0)
    conv = Conv4d(4, 8, 3, padding=1)
    assert conv.bias is not None and conv.bias.shape == (8,)
    fan_in = 4 * 3**4
    bound = 1 / math.sqrt(fan_in)
    assert conv.bias.abs().max() <= bound
    # kaiming_uniform_(a=√5) over the 4-D fan-in gives the same bound for the weight.
    assert conv.weight.abs().max() <= bound + 1e-7 and conv.weight.abs().max() > 0.9 * bound
    # A zero input gives exactly the bias everywhere, also at the edges (no per-slice biases).
    out = conv(torch.zeros(1, 4, 4, 5, 6, 6))
    torch.testing.assert_close(out, conv.bias.view(1, -1, 1, 1, 1, 1).expand_as(out))


def test_reduces_to_conv3d_for_a_time_kernel_of_one():
    torch.manual_seed(1)
    conv = Conv4d(3, 5, (1, 3, 3, 3), padding=(0, 1, 1, 1))
    x = torch.randn(2, 3, 4, 5, 6, 7)
    expected = torch.stack(
        [
            torch.nn.functional.conv3d(x[:, :, t], conv.weight[:, :, 0], conv.bias, padding=1)
            for t in range(4)
        ],
        dim=2,
    )
    torch.testing.assert_close(conv(x), expected, rtol=1e-5, atol=1e-5)


def test_bad_arguments():
    with pytest.raises(ConfigError, match="groups=3 must divide"):
        Conv4d(4, 8, 3, groups=3)
    with pytest.raises(ConfigError, match="4-tuple"):
        Conv4d(4, 8, (3, 3))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="expects"):
        Conv4d(4, 8, 3)(torch.zeros(1, 3, 4, 4, 4, 4))
    with pytest.raises(ConfigError, match="reflect padding 2"):
        Conv4d(1, 1, 1, padding=2, padding_mode="reflect")(torch.zeros(1, 1, 2, 3, 3, 3))
    with pytest.raises(ConfigError, match="4-tuple"):
        Conv4d(4, 8, True)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"too small on axis H: 2 \+ 2·0 padding < the dilated"):
        Conv4d(1, 1, 3)(torch.zeros(1, 1, 3, 3, 2, 3))
    with pytest.raises(ConfigError, match="too small on axis T: 2 "):
        Conv4d(1, 1, (2, 1, 1, 1), dilation=(2, 1, 1, 1))(torch.zeros(1, 1, 2, 2, 2, 2))


def test_numpy_integers_are_sizes():
    conv = Conv4d(np.int64(2), 4, np.int64(3), padding=(1, np.int64(1), 1, 1))
    assert conv.kernel_size == (3, 3, 3, 3) and conv.padding == (1, 1, 1, 1)
    assert conv(torch.zeros(1, 2, 2, 2, 2, 2)).shape == (1, 4, 2, 2, 2, 2)
