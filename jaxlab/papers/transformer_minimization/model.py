"""A ViT-style encoder classifier with the attention variants of the transformer-minimization paper.

Bermeitinger, Hrycej, Pavone, Kath, Handschuh, "Reducing the Transformer Architecture to a Minimum",
arXiv 2410.13732 (2024). Shapes in names: B batch, T tokens, N width, H heads, D = N/H head width,
M MLP width, C classes, P patch features.

Attention of head h between tokens i and j (the paper's scaled dot-product similarity, written with
the matrices it collapses):

    full            a_ij = softmax_j(x_i W^Q_h (x_j W^K_h)ᵀ / √D),  out = concat_h(a v_h) W^O,
                    v_h = x W^V_h                                   (the baseline: 4N² parameters)
    wqk             x_i W^QK_h x_jᵀ / √D: W^QK = W^Q W^Kᵀ collapsed into one matrix (W^K = I);
                    W^V, W^O kept                                   (N·D + 2N²)
    wqk_novo        the W^QK similarity with W^V = W^O = I: each output is Σ_j a_ij x_j, a convex
                    combination of the inputs                      (N·D)
    symmetric       x_i W^Q_h (x_j W^Q_h)ᵀ / √D (W^K = W^Q): the similarity matrix W^Q W^Qᵀ is
                    symmetric, so a_ij and a_ji have the same score  (N·D + 2N²)
    symmetric_novo  the symmetric similarity with W^V = W^O = I  (N·D)

``triangular=True`` writes the symmetric similarity matrix as T·Tᵀ with T lower-triangular (the
Cholesky form the paper uses to count a symmetric similarity at half the parameters): D(D+1)/2 per
head instead of D², and the same set of similarity matrices (every positive semi-definite one).

Several heads. The paper's collapsed variants are single-head. Here a collapsed head h compares the
h-th slice x_{·,h} (width D) of the tokens with its own D×D matrix, and with W^V = W^O = I it
outputs the convex combination Σ_j a^h_ij x_{j,h} of that slice; so ``heads=1`` is exactly the
paper's variant, and H heads divide its similarity parameters by H. ``full`` is the usual
multi-head attention. Q/K/V/O carry no biases, as in the paper's accounting; all other layers do.
"""
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxlab.errors import UserError

ATTENTION_VARIANTS = ("full", "wqk", "wqk_novo", "symmetric", "symmetric_novo")


class SelfAttention(nn.Module):
    """Softmax self-attention of one of ``ATTENTION_VARIANTS`` (see the module docstring).

    The scores (B, H, T, T) are sown into the ``intermediates`` collection as ``scores``.
    """
    heads: int
    variant: str = "full"
    triangular: bool = False

    @nn.compact
    def __call__(self, x_BTN: jax.Array) -> jax.Array:
        if self.variant not in ATTENTION_VARIANTS:
            raise ValueError(f"unknown attention variant {self.variant!r}; "
                             f"known: {', '.join(ATTENTION_VARIANTS)}")
        if self.triangular and not self.variant.startswith("symmetric"):
            raise ValueError(f"triangular=True applies to the symmetric variants, "
                             f"not to {self.variant!r}")
        width = x_BTN.shape[-1]
        if width % self.heads:
            raise ValueError(f"width {width} is not divisible by heads {self.heads}")
        head_width = width // self.heads
        x_BTHD = x_BTN.reshape(*x_BTN.shape[:-1], self.heads, head_width)
        scores_BHTT = self._scores(x_BTN, x_BTHD, head_width) / jnp.sqrt(head_width)
        self.sow("intermediates", "scores", scores_BHTT)
        weights_BHTT = jax.nn.softmax(scores_BHTT, axis=-1)
        if self.variant.endswith("_novo"):  # W^V = W^O = I: convex combinations of the inputs
            return jnp.einsum("bhqk,bkhd->bqhd", weights_BHTT, x_BTHD).reshape(x_BTN.shape)
        v_BTHD = self._project(x_BTN, "value", head_width)
        out_BTHD = jnp.einsum("bhqk,bkhd->bqhd", weights_BHTT, v_BTHD)
        return nn.DenseGeneral(width, axis=(-2, -1), use_bias=False, name="out")(out_BTHD)

    def _project(self, x_BTN, name, head_width):
        return nn.DenseGeneral((self.heads, head_width), use_bias=False, name=name)(x_BTN)

    def _scores(self, x_BTN, x_BTHD, head_width):
        """Unscaled scores (B, H, T, T) of the variant's similarity."""
        if self.variant == "full":
            q_BTHD = self._project(x_BTN, "query", head_width)
            k_BTHD = self._project(x_BTN, "key", head_width)
            return jnp.einsum("bqhd,bkhd->bhqk", q_BTHD, k_BTHD)
        if self.variant.startswith("wqk"):
            w_qk_HDD = self.param("query_key", nn.initializers.lecun_normal(batch_axis=(0,)),
                                  (self.heads, head_width, head_width))
            q_BTHD = jnp.einsum("bthd,hde->bthe", x_BTHD, w_qk_HDD)
            return jnp.einsum("bqhd,bkhd->bhqk", q_BTHD, x_BTHD)
        q_BTHD = jnp.einsum("bthd,hde->bthe", x_BTHD, self._symmetric_factor(head_width))
        return jnp.einsum("bqhd,bkhd->bhqk", q_BTHD, q_BTHD)

    def _symmetric_factor(self, head_width):
        """W^Q (H, D, D), or T (H, D, D) lower-triangular from D(D+1)/2 parameters per head."""
        if not self.triangular:
            return self.param("query", nn.initializers.lecun_normal(batch_axis=(0,)),
                              (self.heads, head_width, head_width))
        rows, cols = jnp.tril_indices(head_width)
        # Variance 2/(D+1) gives E|x T|² = |x|² for a unit-variance x, as lecun init does for W^Q.
        entries_HE = self.param("query_triangular",
                                nn.initializers.normal(math.sqrt(2 / (head_width + 1))),
                                (self.heads, rows.size))
        return jnp.zeros((self.heads, head_width, head_width)).at[:, rows, cols].set(entries_HE)


class EncoderBlock(nn.Module):
    """x + attention(LN(x)), then (optionally) x + MLP(LN(x))."""
    heads: int
    mlp_dim: int
    use_mlp: bool
    attention: str = "full"
    triangular: bool = False

    @nn.compact
    def __call__(self, x_BTN: jax.Array) -> jax.Array:
        attention = SelfAttention(self.heads, self.attention, self.triangular, name="attention")
        x_BTN = x_BTN + attention(nn.LayerNorm(name="norm1")(x_BTN))
        if self.use_mlp:
            h_BTM = nn.gelu(nn.Dense(self.mlp_dim, name="mlp_in")(nn.LayerNorm(name="norm2")(x_BTN)))
            x_BTN = x_BTN + nn.Dense(x_BTN.shape[-1], name="mlp_out")(h_BTM)
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

    @nn.compact
    def __call__(self, images: jax.Array) -> jax.Array:
        patches_BTP = patchify(images, self.patch_size)
        x_BTN = nn.Dense(self.width, name="embed")(patches_BTP)
        position_TN = self.param("position", nn.initializers.normal(0.02), x_BTN.shape[1:])
        x_BTN = x_BTN + position_TN
        for i in range(self.depth):
            x_BTN = EncoderBlock(self.heads, self.mlp_dim, self.use_mlp, self.attention,
                                 self.triangular, name=f"block{i}")(x_BTN)
        pooled_BN = nn.LayerNorm(name="norm")(x_BTN).mean(axis=1)
        return nn.Dense(self.num_classes, name="head")(pooled_BN)


def classifier(num_classes: int, patch_size: int, width: int, depth: int, heads: int, mlp_dim: int,
               mlp: bool = True, attention: str = "full", triangular: bool = False
               ) -> VisionTransformer:
    """The minimal_transformer experiment's ``config.model.constructor``: checks the attention
    settings (`UserError` naming the config key), then builds the `VisionTransformer`."""
    if attention not in ATTENTION_VARIANTS:
        raise UserError(f"config.model.attention={attention!r} is unknown; "
                        f"expected one of {', '.join(ATTENTION_VARIANTS)}")
    if triangular and not attention.startswith("symmetric"):
        raise UserError(f"config.model.triangular=True needs a symmetric attention, "
                        f"got config.model.attention={attention!r}")
    if width % heads:
        raise UserError(f"config.model.width={width} is not divisible by "
                        f"config.model.heads={heads}")
    return VisionTransformer(num_classes=num_classes, patch_size=patch_size, width=width,
                             depth=depth, heads=heads, mlp_dim=mlp_dim, use_mlp=mlp,
                             attention=attention, triangular=triangular)


def patchify(images: jax.Array, patch_size: int) -> jax.Array:
    """(B, height, width, channels) -> (B, tokens, patch_size² · channels), row-major patches."""
    b, h, w, c = images.shape
    if h % patch_size or w % patch_size:
        raise UserError(f"config.model.patch_size={patch_size} does not divide the {h}x{w} "
                        f"images of the dataset")
    p = patch_size
    x = images.reshape(b, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, (h // p) * (w // p), p * p * c)


def attention_parameter_count(variant: str, width: int, heads: int, triangular: bool = False) -> int:
    """Parameters of one `SelfAttention` (no biases): N = width, D = N/H.

    full 4N²;  wqk and symmetric H·D² + 2N² = N·D + 2N²;  wqk_novo and symmetric_novo N·D;
    with ``triangular`` the symmetric similarity has H·D(D+1)/2 instead of H·D².
    """
    n, d = width, width // heads
    similarity = heads * d * (d + 1) // 2 if triangular else heads * d * d
    return {"full": 4 * n * n,
            "wqk": similarity + 2 * n * n, "symmetric": similarity + 2 * n * n,
            "wqk_novo": similarity, "symmetric_novo": similarity}[variant]


def parameter_count(model: VisionTransformer, image_shape: tuple[int, int, int]) -> int:
    """Parameters of ``model`` on images of ``image_shape`` = (height, width, channels).

    embedding (P·N + N) + positions (T·N) + depth × [LN 2N + attention + MLP (LN 2N + N·M + M +
    M·N + N) if used] + final LN 2N + head (N·C + C), with P = patch² · channels and T = tokens.
    """
    height, width_px, channels = image_shape
    n, m, c = model.width, model.mlp_dim, model.num_classes
    tokens = (height // model.patch_size) * (width_px // model.patch_size)
    patch_features = model.patch_size ** 2 * channels
    block = 2 * n + attention_parameter_count(model.attention, n, model.heads, model.triangular)
    if model.use_mlp:
        block += 2 * n + n * m + m + m * n + n
    return (patch_features * n + n) + tokens * n + model.depth * block + 2 * n + (n * c + c)
