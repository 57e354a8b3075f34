"""A ViT-style encoder classifier with the attention variants of the transformer-minimization paper.

Bermeitinger, Hrycej, Pavone, Kath, Handschuh, "Reducing the Transformer Architecture to a Minimum",
arXiv 2410.13732 (2024). Shapes in names: B batch, T tokens, N width, H heads, D = N/H head width,
M MLP width, C classes, P patch features.

The paper's attention (its Eq. 3-4): head h weighs token j for token i by
a_hij = softmax_j(x_i W^Q_h (x_j W^K_h)ᵀ / √D), with W^Q_h, W^K_h, W^V_h of size N×D, and the layer
outputs concat_h(Σ_j a_hij x_j W^V_h) W^O. The variants (the paper's names in brackets):

    full            [unchanged] the above; 4N² parameters whatever H.
    wqk             [Wqk] one head; W^Q W^Kᵀ collapsed into one N×N matrix W^QK (the paper sets
                    W^K = I and trains W^QK in W^Q's place): x_i W^QK x_jᵀ / √N; W^V, W^O kept: 3N².
    wqk_novo        [Wqk + noWv.Vo, the paper's minimum variant] the W^QK similarity with
                    W^V = W^O = I: each output is Σ_j a_ij x_j, a convex combination of the
                    inputs (Section 3): N².
    symmetric       [symmetric] W^K_h = W^Q_h (Section 5: "reusing W^Q_h as W^K_h"), each of N×D,
                    so every head sees all N features and its similarity W^Q_h W^Q_hᵀ is
                    symmetric; W^V, W^O kept: N² + 2N² = 3N² whatever H. The paper runs it with 1
                    and 4 heads.

Two further forms are the project's extensions, not variants the paper trained:

    symmetric_novo  one head; the symmetric similarity with W^V = W^O = I: N².
    triangular      (with symmetric or symmetric_novo, one head) the symmetric similarity written
                    as T·Tᵀ with T lower-triangular, the Cholesky form Section 5 gives to count a
                    symmetric similarity at N(N+1)/2 parameters: N(N+1)/2 (+ 2N² with W^V, W^O).

The paper defines the collapsed variants for one head only (Section 4: an N×N W^QK_h per head costs
more than W^Q_h and W^K_h together once H > 1), so they refuse H > 1. Q/K/V/O carry no biases, as
in the paper's parameter accounting; all other layers do.

Parameters name their axes for sharding (`jaxlab.sharding`, ours): embed (N), heads (H), kv (D),
mlp (M), classes (C); the collapsed and triangular matrices are left to the automatic FSDP rule.
"""

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxlab.errors import UserError
from jaxlab.papers.transformer_minimization.variants import ATTENTION_VARIANTS, MULTI_HEAD_VARIANTS


def named(init, *names: str | None):
    """``init`` with its parameter's logical axis names (Flax's logical partitioning)."""
    return nn.with_logical_partitioning(init, names)


KERNEL_INIT, ZEROS, ONES = (
    nn.initializers.lecun_normal(),
    nn.initializers.zeros,
    nn.initializers.ones,
)


def dense(features: int, names: tuple[str | None, str | None], name: str, dtype: Any) -> nn.Dense:
    """A Dense layer computing in ``dtype`` whose float32 kernel and bias carry logical axis
    names (their values unchanged)."""
    return nn.Dense(
        features,
        dtype=dtype,
        kernel_init=named(KERNEL_INIT, *names),
        bias_init=named(ZEROS, names[1]),
        name=name,
    )


def layer_norm(name: str, dtype: Any) -> nn.LayerNorm:
    return nn.LayerNorm(
        dtype=dtype, scale_init=named(ONES, "embed"), bias_init=named(ZEROS, "embed"), name=name
    )


def attention_settings_error(attention: str, heads: int, triangular: bool) -> str | None:
    """Why these attention settings are not a variant of `SelfAttention`, or None if they are."""
    if attention not in ATTENTION_VARIANTS:
        return (
            f"attention={attention!r} is unknown; expected one of {', '.join(ATTENTION_VARIANTS)}"
        )
    if triangular and not attention.startswith("symmetric"):
        return f"triangular=True needs a symmetric attention, got attention={attention!r}"
    if heads != 1 and (triangular or attention not in MULTI_HEAD_VARIANTS):
        form = f"{attention} with triangular=True" if triangular else attention
        return (
            f"heads={heads}: {form} is defined for one head (several heads take "
            f"attention={' or '.join(MULTI_HEAD_VARIANTS)} without triangular); set heads=1"
        )
    return None


class SelfAttention(nn.Module):
    """Softmax self-attention of one of ``ATTENTION_VARIANTS`` (see the module docstring).

    The scores (B, H, T, T) are sown into the ``intermediates`` collection as ``scores``.
    """

    heads: int
    variant: str = "full"
    triangular: bool = False
    dtype: Any = jnp.float32  # of the computation (ours); parameters stay float32

    @nn.compact
    def __call__(self, x_BTN: jax.Array) -> jax.Array:
        error = attention_settings_error(self.variant, self.heads, self.triangular)
        if error:
            raise ValueError(error)
        width = x_BTN.shape[-1]
        if width % self.heads:
            raise ValueError(f"width {width} is not divisible by heads {self.heads}")
        head_width = width // self.heads
        scores_BHTT = self._scores(x_BTN, head_width) / jnp.sqrt(head_width)
        self.sow("intermediates", "scores", scores_BHTT)
        weights_BHTT = jax.nn.softmax(scores_BHTT.astype(jnp.float32), axis=-1).astype(self.dtype)
        if self.variant.endswith("_novo"):  # one head, W^V = W^O = I: convex combinations
            return jnp.einsum("bqk,bkn->bqn", weights_BHTT[:, 0], x_BTN)
        v_BTHD = self._project(x_BTN, "value", head_width)
        out_BTHD = jnp.einsum("bhqk,bkhd->bqhd", weights_BHTT, v_BTHD)
        return nn.DenseGeneral(
            width,
            axis=(-2, -1),
            use_bias=False,
            dtype=self.dtype,
            kernel_init=named(KERNEL_INIT, "heads", "kv", "embed"),
            name="out",
        )(out_BTHD)

    def _project(self, x_BTN, name, head_width):
        """x W_h for every head h: (B, T, H, D), from an N×D matrix per head."""
        return nn.DenseGeneral(
            (self.heads, head_width),
            use_bias=False,
            dtype=self.dtype,
            kernel_init=named(KERNEL_INIT, "embed", "heads", "kv"),
            name=name,
        )(x_BTN)

    def _scores(self, x_BTN, head_width):
        """Unscaled scores (B, H, T, T) of the variant's similarity."""
        if self.variant == "full":
            q_BTHD = self._project(x_BTN, "query", head_width)
            k_BTHD = self._project(x_BTN, "key", head_width)
            return jnp.einsum("bqhd,bkhd->bhqk", q_BTHD, k_BTHD)
        if self.variant.startswith("wqk"):  # one head: x_i W^QK x_jᵀ
            width = x_BTN.shape[-1]
            w_qk_NN = self.param("query_key", nn.initializers.lecun_normal(), (width, width))
            return jnp.einsum("bqn,bkn->bqk", x_BTN @ w_qk_NN.astype(self.dtype), x_BTN)[:, None]
        if self.triangular:  # one head: x_i T Tᵀ x_jᵀ
            q_BTN = x_BTN @ self._triangular_factor(x_BTN.shape[-1]).astype(self.dtype)
            return jnp.einsum("bqn,bkn->bqk", q_BTN, q_BTN)[:, None]
        q_BTHD = self._project(x_BTN, "query", head_width)  # W^K_h = W^Q_h
        return jnp.einsum("bqhd,bkhd->bhqk", q_BTHD, q_BTHD)

    def _triangular_factor(self, width):
        """T (N, N) lower-triangular from N(N+1)/2 parameters."""
        rows, cols = jnp.tril_indices(width)
        # Variance 2/(N+1) gives E|x T|² = |x|² for a unit-variance x, as lecun init does for W^Q.
        entries = self.param(
            "query_triangular", nn.initializers.normal(math.sqrt(2 / (width + 1))), (rows.size,)
        )
        return jnp.zeros((width, width)).at[rows, cols].set(entries)


class EncoderBlock(nn.Module):
    """x + attention(LN(x)), then (optionally) x + MLP(LN(x)); in training, dropout of rate
    ``dropout`` on each branch before it is added (ours: the paper trains without dropout, and
    the default 0 leaves the block as the paper's)."""

    heads: int
    mlp_dim: int
    use_mlp: bool
    attention: str = "full"
    triangular: bool = False
    dropout: float = 0.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x_BTN: jax.Array, train: bool = False) -> jax.Array:
        attention = SelfAttention(
            self.heads, self.attention, self.triangular, self.dtype, name="attention"
        )
        branch_BTN = attention(layer_norm("norm1", self.dtype)(x_BTN))
        x_BTN = x_BTN + nn.Dropout(self.dropout, deterministic=not train)(branch_BTN)
        if self.use_mlp:
            h_BTM = nn.gelu(
                dense(self.mlp_dim, ("embed", "mlp"), "mlp_in", self.dtype)(
                    layer_norm("norm2", self.dtype)(x_BTN)
                )
            )
            branch_BTN = dense(x_BTN.shape[-1], ("mlp", "embed"), "mlp_out", self.dtype)(h_BTM)
            x_BTN = x_BTN + nn.Dropout(self.dropout, deterministic=not train)(branch_BTN)
        return x_BTN


class VisionTransformer(nn.Module):
    """Images (B, height, width, channels) -> class logits (B, C); mean pooling over tokens."""

    num_classes: int
    patch_size: int
    width: int
    depth: int
    heads: int
    mlp_dim: int
    use_mlp: bool = True
    attention: str = "full"
    triangular: bool = False
    dropout: float = 0.0  # ours, see `EncoderBlock`
    dtype: Any = jnp.float32  # of the computation (ours): bfloat16 for mixed precision

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
        patches_BTP = patchify(images, self.patch_size)
        x_BTN = dense(self.width, (None, "embed"), "embed", self.dtype)(patches_BTP)
        position_TN = self.param(
            "position", named(nn.initializers.normal(0.02), None, "embed"), x_BTN.shape[1:]
        )
        x_BTN = x_BTN + position_TN.astype(self.dtype)
        for i in range(self.depth):
            x_BTN = EncoderBlock(
                self.heads,
                self.mlp_dim,
                self.use_mlp,
                self.attention,
                self.triangular,
                self.dropout,
                self.dtype,
                name=f"block{i}",
            )(x_BTN, train)
        pooled_BN = layer_norm("norm", self.dtype)(x_BTN).mean(axis=1)
        return dense(self.num_classes, ("embed", "classes"), "head", self.dtype)(pooled_BN)


def classifier(
    num_classes: int,
    patch_size: int,
    width: int,
    depth: int,
    heads: int,
    mlp_dim: int,
    mlp: bool = True,
    attention: str = "full",
    triangular: bool = False,
    dropout: float = 0.0,
    dtype: Any = jnp.float32,
) -> VisionTransformer:
    """The minimal_transformer experiment's ``config.model.constructor``: checks the attention
    settings (`UserError` naming the config key), then builds the `VisionTransformer`."""
    error = attention_settings_error(attention, heads, triangular)
    if error:
        raise UserError(f"config.model.{error}")
    if width % heads:
        raise UserError(
            f"config.model.width={width} is not divisible by config.model.heads={heads}"
        )
    if not 0 <= dropout < 1:
        raise UserError(f"config.model.dropout must be in [0, 1), got {dropout}")
    return VisionTransformer(
        num_classes=num_classes,
        patch_size=patch_size,
        width=width,
        depth=depth,
        heads=heads,
        mlp_dim=mlp_dim,
        use_mlp=mlp,
        attention=attention,
        triangular=triangular,
        dropout=dropout,
        dtype=dtype,
    )


def patchify(images: jax.Array, patch_size: int) -> jax.Array:
    """(B, height, width, channels) -> (B, tokens, patch_size² · channels), row-major patches."""
    b, h, w, c = images.shape
    if h % patch_size or w % patch_size:
        raise UserError(
            f"config.model.patch_size={patch_size} does not divide the {h}x{w} "
            f"images of the dataset"
        )
    p = patch_size
    x = images.reshape(b, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, (h // p) * (w // p), p * p * c)


def attention_parameter_count(variant: str, width: int, triangular: bool = False) -> int:
    """Parameters of one `SelfAttention` (no biases), N = width: full 4N²; wqk and symmetric 3N²
    (symmetric: H heads of N×D, N² in all, whatever H); wqk_novo and symmetric_novo N²; with
    ``triangular`` the symmetric similarity has N(N+1)/2 instead of N²."""
    n = width
    similarity = n * (n + 1) // 2 if triangular else n * n
    value_output = 0 if variant.endswith("_novo") else 2 * n * n
    return 4 * n * n if variant == "full" else similarity + value_output


def parameter_count(model: VisionTransformer, image_shape: tuple[int, int, int]) -> int:
    """Parameters of ``model`` on images of ``image_shape`` = (height, width, channels).

    embedding (P·N + N) + positions (T·N) + depth × [LN 2N + attention + MLP (LN 2N + N·M + M +
    M·N + N) if used] + final LN 2N + head (N·C + C), with P = patch² · channels and T = tokens.
    """
    height, width_px, channels = image_shape
    n, m, c = model.width, model.mlp_dim, model.num_classes
    tokens = (height // model.patch_size) * (width_px // model.patch_size)
    patch_features = model.patch_size**2 * channels
    block = 2 * n + attention_parameter_count(model.attention, n, model.triangular)
    if model.use_mlp:
        block += 2 * n + n * m + m + m * n + n
    return (patch_features * n + n) + tokens * n + model.depth * block + 2 * n + (n * c + c)
