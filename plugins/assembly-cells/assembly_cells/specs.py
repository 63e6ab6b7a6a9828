"""Cell specs and their exact parameter-count formulas (no torch here).

Every spec is a frozen, keyword-only attrs class deriving from
:class:`assembly.plugin.CellSpec`, so every cell accepts ``bias``, ``init``,
``init_scale`` and ``gate_bias``. Each ``*_parameters(spec, input_size, hidden)`` function
returns exactly the number of parameters the matching layer in :mod:`assembly_cells`
holds (the planner uses the formula; the tests hold it equal to the module's count).

The equations of each cell are in the layer classes' docstrings; the short forms are
repeated on the spec classes so that ``assemble components`` can show them.
"""

from __future__ import annotations

from typing import Any

import attrs
from assembly.plugin import CellSpec, one_of, positive


def _no_gates(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """``gate_bias`` on a cell without gates is a mistake, not something to ignore."""
    if value is not None:
        raise ValueError(f"{attribute.name} applies to gated cells only; this cell has no "
                         f"gates (leave it out); got {value!r}")


# -- Jozefowicz et al. 2015 mutants ---------------------------------------------------------


@attrs.frozen(kw_only=True)
class Jzs1Spec(CellSpec):
    """JZS1 / MUT1 (Jozefowicz, Zaremba & Sutskever 2015)::

        z  = σ(W_xz x + b_z)
        r  = σ(W_xr x + W_hr h + b_r)
        h' = tanh(W_hh (r ⊙ h) + tanh(x̃) + b_h) ⊙ z + h ⊙ (1 − z)

    ``x̃ = x`` when ``dim(x) = hidden``, else ``x̃ = P x`` with a learned bias-free input
    projection P (hidden × input). Gate biases b_z, b_r start at ``gate_bias`` (default
    1.0), b_h at 0.
    """


@attrs.frozen(kw_only=True)
class Jzs2Spec(CellSpec):
    """JZS2 / MUT2::

        z  = σ(W_xz x + W_hz h + b_z)
        r  = σ(x̃ + W_hr h + b_r)
        h' = tanh(W_hh (r ⊙ h) + W_xh x + b_h) ⊙ z + h ⊙ (1 − z)

    ``x̃`` as in JZS1 (a bias-free learned projection only when ``dim(x) ≠ hidden``).
    Gate biases start at ``gate_bias`` (default 1.0), b_h at 0.
    """


@attrs.frozen(kw_only=True)
class Jzs3Spec(CellSpec):
    """JZS3 / MUT3::

        z  = σ(W_xz x + W_hz tanh(h) + b_z)
        r  = σ(W_xr x + W_hr h + b_r)
        h' = tanh(W_hh (r ⊙ h) + W_xh x + b_h) ⊙ z + h ⊙ (1 − z)

    Gate biases start at ``gate_bias`` (default 1.0), b_h at 0.
    """


def _projection(input_size: int, hidden: int) -> int:
    return 0 if input_size == hidden else hidden * input_size


def jzs1_parameters(spec: Jzs1Spec, input_size: int, hidden: int) -> int:
    """W_xz, W_xr (2·H·I) + W_hr, W_hh (2·H²) + P (H·I when I ≠ H) + b_z, b_r, b_h."""
    return (2 * hidden * input_size + 2 * hidden * hidden + _projection(input_size, hidden)
            + (3 * hidden if spec.bias else 0))


def jzs2_parameters(spec: Jzs2Spec, input_size: int, hidden: int) -> int:
    """W_xz, W_xh (2·H·I) + W_hz, W_hr, W_hh (3·H²) + P (H·I when I ≠ H) + 3 biases."""
    return (2 * hidden * input_size + 3 * hidden * hidden + _projection(input_size, hidden)
            + (3 * hidden if spec.bias else 0))


def jzs3_parameters(spec: Jzs3Spec, input_size: int, hidden: int) -> int:
    """W_xz, W_xr, W_xh (3·H·I) + W_hz, W_hr, W_hh (3·H²) + 3 biases."""
    return 3 * hidden * input_size + 3 * hidden * hidden + (3 * hidden if spec.bias else 0)


# -- IRNN -----------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class IrnnSpec(CellSpec):
    """IRNN (Le, Jaitly & Hinton 2015)::

        h' = relu(W_x x + W_h h + b)

    ``init = "default"`` is the paper's: ``W_h = scale · I``, ``b = 0``,
    ``W_x ~ N(0, 0.001²)``. The other ``init`` values follow the core's rules
    (``identity`` uses ``init_scale``). The cell has no gates, so ``gate_bias`` is refused.
    """

    scale: float = attrs.field(default=1.0, validator=positive)
    gate_bias: float | None = attrs.field(default=None, validator=_no_gates)


def irnn_parameters(spec: IrnnSpec, input_size: int, hidden: int) -> int:
    """W_x (H·I) + W_h (H²) + b (H)."""
    return hidden * input_size + hidden * hidden + (hidden if spec.bias else 0)


# -- uRNN -----------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class UrnnSpec(CellSpec):
    """Unitary RNN (Arjovsky, Shah & Bengio 2015) with N = ``hidden`` complex units::

        W  = D₃ R₂ F⁻¹ D₂ Π R₁ F D₁          (exactly unitary: ‖W h‖ = ‖h‖)
        h' = modReLU(W h + V x + c),   modReLU(z) = relu(|z| + b) · z / |z|

    D_k = diag(exp(i θ_k)) (3N phases), R_k = I − 2 v_k v_kᴴ / ‖v_k‖² (2 complex vectors,
    4N reals), F the unitary ("ortho") FFT, Π a fixed random permutation (a buffer):
    7N recurrent parameters. V x + c is a real linear map input → 2N read as [Re; Im].
    The state and the output are the real vector ``[Re h; Im h]`` of size 2N.

    ``bias = false`` removes c and the modReLU bias b; modReLU with b = 0 is the identity,
    so the cell becomes the *linear* unitary RNN ``h' = W h + V x``. ``init`` chooses V's
    initialiser (``default``: Glorot-uniform as in the paper; ``uniform``;
    ``orthogonal``); the recurrent map is unitary by construction, so ``identity`` is
    refused, and so is ``gate_bias`` (no gates).
    """

    init: str = attrs.field(default="default", validator=one_of("default", "uniform",
                                                                 "orthogonal"))
    gate_bias: float | None = attrs.field(default=None, validator=_no_gates)


def urnn_parameters(spec: UrnnSpec, input_size: int, hidden: int) -> int:
    """θ (3N) + reflections (4N) + V (2N·I) + c (2N) and modReLU b (N) with bias."""
    return 7 * hidden + 2 * hidden * input_size + (3 * hidden if spec.bias else 0)


def urnn_state_sizes(spec: UrnnSpec, hidden: int) -> tuple[int, ...]:
    """One real state ``[Re h; Im h]`` of size 2N."""
    return (2 * hidden,)


def urnn_output_size(spec: UrnnSpec, hidden: int) -> int:
    """The output is the state ``[Re h; Im h]``: 2N."""
    return 2 * hidden


# -- layer-normalised LSTM / GRU -------------------------------------------------------------


@attrs.frozen(kw_only=True)
class LayerNormLstmSpec(CellSpec):
    """LSTM with layer normalisation (Ba, Kiros & Hinton 2016, eq. 20–22)::

        (i f g o) = LN(W_h h; α_h) + LN(W_x x; α_x) + b
        c' = σ(f) ⊙ c + σ(i) ⊙ tanh(g)
        h' = σ(o) ⊙ tanh(LN(c'; α_c, β_c))

    LN normalises over the whole 4H gate vector (separately for the recurrent and the
    input contribution, as in the paper). The paper's shifts β_h, β_x and b are one
    redundant sum, so one bias b is kept. ``forget_bias`` initialises b_f (default 1.0);
    ``gate_bias`` b_i and b_o. ``bias = false`` removes b and β_c (gains stay).
    """

    forget_bias: float = 1.0


@attrs.frozen(kw_only=True)
class LayerNormGruSpec(CellSpec):
    """GRU with layer normalisation (Ba et al. 2016 applied to the GRU)::

        a_x = LN(W_x x; α_x) + b_x,   a_h = LN(W_h h; α_h)           (each over all 3H)
        r = σ(a_x^r + a_h^r),   z = σ(a_x^z + a_h^z)
        n = tanh(a_x^n + r ⊙ (a_h^n + b_hn))
        h' = (1 − z) ⊙ n + z ⊙ h         (update = "torch")
        h' = z ⊙ n + (1 − z) ⊙ h         (update = "cho")

    ``gate_bias`` initialises b_x^r and b_x^z (default 0). ``bias = false`` removes b_x and
    b_hn (gains stay).
    """

    update: str = attrs.field(default="torch", validator=one_of("torch", "cho"))


def layernorm_lstm_parameters(spec: LayerNormLstmSpec, input_size: int, hidden: int) -> int:
    """W_x (4H·I) + W_h (4H²) + α_x, α_h (8H) + α_c (H) + b (4H) and β_c (H) with bias."""
    return (4 * hidden * (input_size + hidden) + 9 * hidden
            + (5 * hidden if spec.bias else 0))


def layernorm_gru_parameters(spec: LayerNormGruSpec, input_size: int, hidden: int) -> int:
    """W_x (3H·I) + W_h (3H²) + α_x, α_h (6H) + b_x (3H) and b_hn (H) with bias."""
    return (3 * hidden * (input_size + hidden) + 6 * hidden
            + (4 * hidden if spec.bias else 0))


def lstm_state_sizes(spec: Any, hidden: int) -> tuple[int, ...]:
    """(h, c)."""
    return (hidden, hidden)
